/**
 * `selfalign stage salmon-rl --trainer openrlhf`: the stage-1 prompts of a run (or a prompt file) become the prompt
 * JSONL of OpenRLHF's PPO and a launch script: records in salmon-rl/, the SFT adapter found beside the verbose-clone
 * training, red-team prompts typed red-teaming, a prompt file's typed as asked; bash accepts the script.
 */
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runStageCommand } from "../src/cli/commands/stage.js";
import { defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { openRun, recordId } from "../src/run-store/index.js";
import { parseRewardLabel } from "../src/serve/reward/openrlhf-request.js";
import { chatPrompt } from "../src/stages/engrave/prompt.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-salmon-rl-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function runWithPrompts(runDir: string): Promise<void> {
  const run = await openRun(runDir, { create: true });
  const selfInstruct = await run.stage("self-instruct");
  const redTeam = await run.stage("red-team");
  const generated = { round: 1, output: "", source: "self-instruct", avgSimilarity: 0, maxSimilarity: 0, backend: "x" };
  for (const [i, [instruction, input]] of [
    ["Write a haiku.", ""],
    ["Sum these.", "2, 3"],
  ].entries()) {
    await selfInstruct.appendRecord({
      id: recordId("self-instruct", i),
      parentId: "seed",
      instruction,
      input,
      ...generated,
    });
  }
  await redTeam.appendRecord({
    id: recordId("red-team", 1),
    parentId: "topic",
    instruction: "What is the price of gold today?",
    input: "",
    output: "",
    source: "red-team",
    questionType: "real-time information",
    topic: "Gold",
    backend: "x",
  });
  // A finished verbose-clone training with its PEFT folder, as its manifest records it.
  const verboseClone = await run.stage("verbose-clone");
  const adapter = join(runDir, "verbose-clone", "adapter");
  await mkdir(join(adapter, "peft"), { recursive: true });
  await writeFile(join(adapter, "peft", "adapter_config.json"), "{}");
  await writeFile(join(adapter, "adapter.gguf"), "");
  verboseClone.manifest.extra.adapter = join(adapter, "adapter.gguf");
  // And a trained reward model, as salmon-reward-model records its folder.
  const rewardModel = await run.stage("salmon-reward-model");
  rewardModel.manifest.extra.rewardModel = join(runDir, "salmon-reward-model", "reward-model");
  for (const store of [selfInstruct, redTeam, verboseClone, rewardModel]) await store.saveManifest();
  await run.close();
}

const rowsOf = async (path: string) =>
  (await readFile(path, "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { id: string; prompt: string; label: string });

describe("selfalign stage salmon-rl --trainer openrlhf", () => {
  it("exports the run's prompts with their types and a launch script that merges the verbose-clone adapter", async () => {
    const runDir = join(dir, "run");
    await runWithPrompts(runDir);
    const summary = await runStageCommand("salmon-rl", {
      run: runDir,
      trainer: "openrlhf",
      openrlhfBase: "meta-llama/Llama-2-7b-hf",
      openrlhfGpusPerNode: 4,
      openrlhfRewardUrl: "http://10.0.0.5:8000/get_reward",
    });
    const out = join(runDir, "salmon-rl", "openrlhf");
    expect(summary).toContain(`wrote 3 prompts to ${join(out, "prompts.jsonl")}`);
    const constitution = await loadConstitution(defaultConstitutionDir());
    const rows = await rowsOf(join(out, "prompts.jsonl"));
    expect(rows.map((row) => parseRewardLabel(row.label))).toEqual([
      { instruction: "Write a haiku.", promptType: "general" },
      { instruction: "Sum these.", input: "2, 3", promptType: "general" },
      { instruction: "What is the price of gold today?", promptType: "red-teaming" },
    ]);
    expect(rows[1]!.prompt).toBe(chatPrompt(constitution.assistant, "concise", "Sum these.", "2, 3"));
    const records = await rowsOf(join(runDir, "salmon-rl", "records.jsonl"));
    expect(records).toHaveLength(3);

    const script = await readFile(join(out, "train_ppo.sh"), "utf8");
    expect(script).toContain(`BASE="\${BASE:-meta-llama/Llama-2-7b-hf}"`);
    expect(script).toContain(`SFT_ADAPTER="\${SFT_ADAPTER:-${join(runDir, "verbose-clone", "adapter", "peft")}}"`);
    expect(script).toContain(`REWARD_URL="\${REWARD_URL:-http://10.0.0.5:8000/get_reward}"`);
    expect(script).toContain("--actor.num_gpus_per_node 4");
    expect(script).toContain(`selfalign serve --reward-model ${join(runDir, "salmon-reward-model", "reward-model")}`);
    expect(script).toContain(`--data.prompt_dataset ${join(out, "prompts.jsonl")}`);
    expect(spawnSync("bash", ["-n", join(out, "train_ppo.sh")]).status).toBe(0);
  });

  it("types a prompt file's prompts as asked, and warns when there is nothing to merge", async () => {
    const runDir = join(dir, "file-run");
    const file = join(dir, "math.jsonl");
    await writeFile(file, `${JSON.stringify({ instruction: "Solve x + 2 = 5." })}\n`);
    const summary = await runStageCommand("salmon-rl", {
      run: runDir,
      trainer: "openrlhf",
      promptsPath: file,
      promptType: "reasoning",
    });
    expect(summary).toContain("wrote 1 prompts");
    expect(summary).toContain("warning: no Hugging Face base (openrlhf.base) to merge into the policy; set BASE");
    const [row] = await rowsOf(join(runDir, "salmon-rl", "openrlhf", "prompts.jsonl"));
    expect(parseRewardLabel(row!.label)).toEqual({ instruction: "Solve x + 2 = 5.", promptType: "reasoning" });
    await expect(runStageCommand("salmon-rl", { run: join(dir, "bad"), trainer: "vllm" })).rejects.toThrow(/trainer/);
  });
});
