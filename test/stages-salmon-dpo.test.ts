/**
 * salmon-dpo end to end on a tiny GGUF through the real engine and trainer: `selfalign run` (runPipeline) goes
 * self-align -> engrave -> verbose-clone -> salmon-responses -> salmon-preferences -> salmon-aggregate ->
 * salmon-reward-model -> salmon-dpo (grammars keep the random model's output parseable; a judge model rebuilt to
 * prefer one answer labels the pairs). The DPO pairs are the SFT model's own training format, the margin rises
 * against the frozen SFT adapter, the exported adapter loads in node-llama-cpp and gives there the margin the
 * trainer reported, it is the run's final adapter, an interrupted DPO resumes to the adapter of an uninterrupted one,
 * and another beta moves the folder aside while the old one comes back with its settings.
 */
import { cp, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPipelineSummary } from "../src/cli/commands/run.js";
import { registerStage, runStageCommand } from "../src/cli/commands/stage.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { AbortedError } from "../src/errors/index.js";
import { type TinyModelOptions, writeTinyModel } from "../src/gguf/index.js";
import { selfAlignGrammar, verboseGrammar } from "../src/pipeline/demo-grammars.js";
import { parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
import { collectReportData } from "../src/report/index.js";
import { readJsonl, readManifest } from "../src/run-store/index.js";
import { chatPrompt } from "../src/stages/engrave/prompt.js";
import { judgePromptHead, judgePromptTail } from "../src/stages/salmon/judge-prompt.js";
import { pairResponses } from "../src/stages/salmon/preferences.js";
import type { SalmonResponseRecord } from "../src/stages/salmon/responses.js";
import { rewardPrincipleText } from "../src/stages/salmon/reviewer-prompt.js";
import { writeAgreeingJudge } from "./fixtures/salmon-judge.js";
import { readRecordsFile } from "./fixtures/stage-files.js";

const seed = 11;
const modelOptions: TinyModelOptions = {
  layers: 2,
  dim: 64,
  heads: 4,
  kvHeads: 2,
  ffn: 128,
  contextLength: 16384,
  seed: 7,
};
const beta = 0.5;
const prompts = [
  "Explain how a bicycle works.",
  "Give me three tips for sleeping well.",
  "Why is the sky blue?",
  "Name a good book for a long train ride.",
];
const responseGrammar = `root ::= "Answer: " w " " w " " w "."
w ::= "sea" | "sky" | "road" | "lamp" | "tree" | "stone"`;

let dir: string;
let model: string;
let judge: string;
let promptsFile: string;
let constitution: Constitution;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-salmon-dpo-"));
  model = join(dir, "tiny.gguf");
  judge = join(dir, "judge.gguf");
  promptsFile = join(dir, "prompts.jsonl");
  await writeTinyModel(model, modelOptions);
  await writeFile(promptsFile, `${prompts.map((instruction) => JSON.stringify({ instruction })).join("\n")}\n`);
  constitution = await loadConstitution(defaultConstitutionDir());
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const train = { rank: 4, alpha: 8, threads: 1, batchTokens: 2048, checkpointEvery: 2 };

/** The run's config: SELF-ALIGN from a prompt file, then SALMON up to `upTo` (later stages skipped). */
function config(runDir: string, upTo: "responses" | "dpo", dpo: Record<string, unknown> = {}) {
  const salmon = upTo === "dpo";
  const file = { path: promptsFile };
  return {
    config: parsePipelineConfig(
      {
        name: "salmon-dpo",
        model,
        runDir,
        seed,
        report: salmon,
        // Two sequences sharing the meta-prompt's cache: the generating stages run once, only the training is compared.
        engine: { contextSize: 16384, sequences: 2, threads: 1 },
        stages: {
          "self-instruct": { skip: true },
          "red-team": { skip: true },
          "self-align": {
            prompts: file,
            maxPrompts: 2,
            sampling: {
              maxTokens: 420,
              grammar: selfAlignGrammar(
                constitution.principles,
                constitution.assistant.thoughtOpening,
                constitution.assistant.generationName,
              ),
            },
          },
          engrave: { includeIdentity: false, train: { ...train, maxSteps: 2, learningRate: 3e-3 } },
          "verbose-clone": {
            prompts: file,
            maxPrompts: 2,
            sampling: { maxTokens: 200, grammar: verboseGrammar },
            train: { ...train, maxSteps: 2, learningRate: 3e-3 },
          },
          "salmon-responses": {
            skip: false,
            prompts: file,
            sampling: { maxTokens: 40, grammar: responseGrammar },
          },
          "salmon-preferences": { skip: !salmon, judge, principles: ["concise"] },
          // No negation, noise or rules: every example of the prepared pair prefers the same answer.
          "salmon-aggregate": {
            skip: !salmon,
            negationRate: 0,
            noiseRate: 0,
            ruleNoiseRate: 0,
            aiPhrase: "",
            languageRule: false,
          },
          "salmon-reward-model": {
            skip: !salmon,
            evalFraction: 0.25,
            evalEvery: 1,
            train: { ...train, maxSteps: 2 },
          },
          "salmon-dpo": {
            skip: !salmon,
            beta,
            evalFraction: 0.25,
            evalEvery: 2,
            train: { ...train, batchTokens: 4096, maxSteps: 6, learningRate: 1e-2, dropout: 0 },
            ...dpo,
          },
        },
      },
      "salmon-dpo test config",
    ),
    baseDir: runDir,
  };
}

/** The judge: the tiny model, made to prefer answer 1 of the first pair in both orders under "concise". */
async function prepareJudge(runDir: string) {
  const responses = (await readJsonl<SalmonResponseRecord>(join(runDir, "salmon-responses", "records.jsonl"))).records;
  const [pair] = pairResponses(responses, seed);
  const principle = constitution.salmon!.rewardPrinciples.find((p) => p.id === "concise")!;
  const tail = judgePromptTail(
    constitution.assistant,
    principle.dimension,
    rewardPrincipleText(constitution, principle, false),
  );
  await writeAgreeingJudge(model, judge, modelOptions, {
    order12: judgePromptHead(constitution.assistant, pair!, pair!.output1, pair!.output2) + tail,
    order21: judgePromptHead(constitution.assistant, pair!, pair!.output2, pair!.output1) + tail,
  });
  return pair!;
}

/** Log-probability of each pair's chosen and rejected completion under the base with `adapter`, in llama.cpp. */
async function llamaCppLogProbs(adapter: string, pairs: Array<{ prompt: string; chosen: string; rejected: string }>) {
  const backend = await createLlamaCppBackend({
    model,
    contextSize: 2048,
    sequences: 1,
    threads: 1,
    lora: [{ path: adapter }],
  });
  try {
    const out: Array<[number, number]> = [];
    for (const pair of pairs) {
      const [chosen, rejected] = await backend.score(pair.prompt, [pair.chosen, pair.rejected]);
      out.push([chosen!.logprob, rejected!.logprob]);
    }
    return out;
  } finally {
    await backend.close();
  }
}

const jsonLines = async (path: string) =>
  (await readFile(path, "utf8"))
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as Record<string, number>);

describe("salmon-dpo through `selfalign run`, after verbose cloning", () => {
  const runDir = () => join(dir, "run");

  it(
    "trains the SFT policy with DPO against the frozen SFT adapter; the adapter is the run's final one and loads in llama.cpp",
    { timeout: 600_000 },
    async () => {
      const first = await runPipeline({ loaded: config(runDir(), "responses") });
      expect(first.stages.find((s) => s.stage === "salmon-responses")?.kept).toBe(2 * prompts.length);
      const pair = await prepareJudge(runDir());

      const result = await runPipeline({ loaded: config(runDir(), "dpo") });
      const status = Object.fromEntries(result.stages.map((stage) => [stage.stage, stage]));
      for (const stage of ["self-align", "engrave", "verbose-clone", "salmon-responses"])
        expect(status[stage]?.status, stage).toBe("up-to-date");
      for (const stage of ["salmon-preferences", "salmon-aggregate", "salmon-reward-model", "salmon-dpo"])
        expect(status[stage]?.status, stage).toBe("ran");
      expect(status["salmon-rl"]?.status).toBe("skipped");

      // The DPO pairs: the aggregated examples in the policy's format, which is the SFT model's training format.
      const examples = await readRecordsFile(join(runDir(), "salmon-aggregate", "records.jsonl"));
      expect(examples.length).toBe(4); // one labelled pair, four passes
      expect(new Set(examples.map((example) => example.chosen))).toEqual(new Set([pair.output1]));
      const pairs = await readRecordsFile(join(runDir(), "salmon-dpo", "records.jsonl"));
      expect(status["salmon-dpo"]?.kept).toBe(examples.length);
      const sft = await readRecordsFile(join(runDir(), "verbose-clone-sft", "records.jsonl"));
      const sftFor = sft.find((record) => record.instruction === pair.instruction)!;
      for (const record of pairs) {
        expect(record.prompt).toBe(chatPrompt(constitution.assistant, "concise", pair.instruction));
        // The prompt the SFT adapter learned for the same request, and its completion format ("\n" + answer ...).
        expect(record.prompt).toBe(sftFor.prompt);
        expect(String(record.chosen).startsWith(`\n${pair.output1}`)).toBe(true);
        expect(String(record.rejected).startsWith(`\n${pair.output2}`)).toBe(true);
        expect(String(sftFor.completion).startsWith("\n")).toBe(true);
      }

      // Started from the verbose-clone adapter, which is also the frozen reference.
      const sftAdapter = result.adapters["verbose-clone"]!;
      const manifest = (await readManifest(join(runDir(), "salmon-dpo", "manifest.json")))!;
      // As the training's folder: its adapter.gguf for the embedded trainer, its peft/ for the hf one.
      expect(sftAdapter).toBe(join(runDir(), "verbose-clone", "adapter", "adapter.gguf"));
      expect(manifest.extra.policyStart).toBe(join(runDir(), "verbose-clone", "adapter"));
      expect(manifest.extra.reference).toBe(manifest.extra.policyStart);
      const adapter = join(runDir(), "salmon-dpo", "adapter", "adapter.gguf");
      expect(result.adapters["salmon-dpo"]).toBe(adapter);
      expect(result.finalAdapter).toBe(adapter);
      expect(formatPipelineSummary(result)).toMatch(new RegExp(`adapter \\(salmon-dpo\\) +${adapter}  \\(final\\)`));
      expect(
        (await stat(join(runDir(), "salmon-dpo", "adapter", "peft", "adapter_model.safetensors"))).size,
      ).toBeGreaterThan(0);

      // Margin and accuracy: per step, and on the held-out pair (0 at the start: the policy is the reference).
      const steps = await jsonLines(join(runDir(), "salmon-dpo", "adapter", "loss.jsonl"));
      expect(steps).toHaveLength(6);
      expect(steps.every((point) => typeof point.margin === "number" && typeof point.accuracy === "number")).toBe(true);
      const held = await jsonLines(join(runDir(), "salmon-dpo", "adapter", "eval.jsonl"));
      expect(held.map((point) => point.step)).toEqual([0, 2, 4, 6]);
      expect(held[0]!.margin).toBeCloseTo(0, 6);
      expect(held[0]!.loss).toBeCloseTo(Math.log(2), 6);
      for (let i = 1; i < held.length; i++) expect(held[i]!.margin!).toBeGreaterThan(held[i - 1]!.margin!);
      expect(held.at(-1)!.accuracy).toBe(1);
      expect(manifest.extra.heldOutMargin).toBe(held.at(-1)!.margin);

      // In llama.cpp: the exported adapter against the SFT adapter gives the trainer's final held-out margin.
      const policy = await llamaCppLogProbs(adapter, pairs as never);
      const reference = await llamaCppLogProbs(sftAdapter, pairs as never);
      const margins = policy.map(([c, r], i) => beta * (c - reference[i]![0] - (r - reference[i]![1])));
      for (const margin of margins) {
        expect(margin).toBeGreaterThan(0.1);
        expect(Math.abs(margin - held.at(-1)!.margin!)).toBeLessThan(1e-3 * Math.max(1, margin));
      }

      // The report: DPO's margins per step and held-out, beside the reward model's curves.
      const report = await collectReportData(runDir());
      const dpoCurve = report.lossCurves.find((curve) => curve.name === join("salmon-dpo", "adapter", "loss.jsonl"))!;
      expect(dpoCurve.points.map((point) => point.margin)).toEqual(steps.map((point) => point.margin));
      expect(report.evalCurves.map((curve) => curve.name)).toEqual(
        expect.arrayContaining([
          join("salmon-dpo", "adapter", "eval.jsonl"),
          join("salmon-reward-model", "reward-model", "eval.jsonl"),
        ]),
      );
      expect(report.records.filter((record) => record.stage === "salmon-dpo")[0]!.instruction).toBe(pair.instruction);

      // Run again: nothing to do, and the DPO adapter is still the final one.
      const again = await runPipeline({ loaded: config(runDir(), "dpo") });
      expect(again.alreadyFinished).toBe(true);
      expect(again.finalAdapter).toBe(adapter);
    },
  );

  it("interrupted during DPO and resumed, ends with the adapter of the uninterrupted run", async () => {
    const whole = join(runDir(), "salmon-dpo", "adapter", "adapter.gguf");
    const expected = await readFile(whole);
    // The same run without its DPO: the folder kept aside, the stage forgotten by pipeline.json.
    await rename(join(runDir(), "salmon-dpo"), join(dir, "dpo-whole"));
    const state = JSON.parse(await readFile(join(runDir(), "pipeline.json"), "utf8"));
    delete state.stages["salmon-dpo"];
    await writeFile(join(runDir(), "pipeline.json"), JSON.stringify(state));
    const controller = new AbortController();
    await expect(
      runPipeline({
        loaded: config(runDir(), "dpo"),
        signal: controller.signal,
        onProgress: (event) => {
          if (event.type === "train-step" && event.stage === "salmon-dpo" && event.step === 3) controller.abort();
        },
      }),
    ).rejects.toThrow(AbortedError);
    expect((await stat(join(runDir(), "salmon-dpo", "adapter", "checkpoint"))).isDirectory()).toBe(true);
    const resumed = await runPipeline({ loaded: config(runDir(), "dpo") });
    expect(resumed.stages.find((s) => s.stage === "salmon-dpo")?.status).toBe("ran");
    expect(await readFile(resumed.finalAdapter!)).toEqual(expected);
    expect(await readFile(join(runDir(), "salmon-dpo", "adapter", "loss.jsonl"), "utf8")).toBe(
      await readFile(join(dir, "dpo-whole", "adapter", "loss.jsonl"), "utf8"),
    );
  });

  it("another beta trains afresh with the old folder kept aside; the old beta brings it back without training", async () => {
    const before = await readFile(join(runDir(), "salmon-dpo", "adapter", "adapter.gguf"));
    const changed = await runPipeline({ loaded: config(runDir(), "dpo", { beta: 0.2 }) });
    const dpo = changed.stages.find((s) => s.stage === "salmon-dpo")!;
    expect(dpo.status).toBe("ran");
    expect(dpo.movedAside).toBeDefined();
    expect(await readFile(join(dpo.movedAside!, "salmon-dpo", "adapter", "adapter.gguf"))).toEqual(before);
    expect(await readFile(changed.finalAdapter!)).not.toEqual(before);
    const steps: number[] = [];
    const back = await runPipeline({
      loaded: config(runDir(), "dpo"),
      onProgress: (event) => {
        if (event.type === "train-step" && event.stage === "salmon-dpo") steps.push(event.step);
      },
    });
    const restored = back.stages.find((s) => s.stage === "salmon-dpo")!;
    expect(restored.restoredFrom).toBeDefined();
    expect(steps).toEqual([]);
    expect(await readFile(back.finalAdapter!)).toEqual(before);
  });
});

describe("selfalign stage salmon-dpo", () => {
  it("takes its flags and help from the options schema, and refuses bad values naming the flag", async () => {
    const program = new Command().exitOverride();
    registerStage(program);
    const help = program.commands
      .find((c) => c.name() === "stage")!
      .commands.find((c) => c.name() === "salmon-dpo")!
      .helpInformation();
    expect(help).toMatch(/--beta <value>\s+DPO's beta: .* \(default 0\.1\)/);
    expect(help).toMatch(/--loss <value>\s+sigmoid: DPO; ipo: .*\(sigmoid, ipo\) \(default "sigmoid"\)/);
    expect(help).toMatch(/--label-smoothing <value>\s+conservative DPO \(cDPO\)/);
    expect(help).toMatch(/--policy <value>\s+where the policy starts: "sft"/);
    expect(help).toMatch(/--reference <value>\s+the frozen reference: "init"/);
    expect(help).toContain("--eval-fraction <value>");
    expect(help).toContain("--train-learning-rate <value>");
    const run = join(dir, "flags");
    await expect(runStageCommand("salmon-dpo", { run, labelSmoothing: "0.7" })).rejects.toThrow(
      /--label-smoothing: too big/,
    );
    await expect(runStageCommand("salmon-dpo", { run, loss: "hinge" })).rejects.toThrow(/--loss: /);
    await expect(runStageCommand("salmon-dpo", { run, beta: "0" })).rejects.toThrow(/--beta: too small/);
  });

  it("refuses another beta on the run's folder, naming it; without SFT adapters it says how to start from the base, and does", async () => {
    const runDir = join(dir, "run");
    await expect(
      runStageCommand("salmon-dpo", {
        run: runDir,
        trainBase: model,
        seed,
        beta: "0.3",
        evalFraction: "0.25",
        evalEvery: "2",
      }),
    ).rejects.toThrow(/holds records made with other settings \(beta: 0\.5 then, 0\.3 now\)/);
    // A run holding only the aggregated preferences: no SFT adapter to start from or compare with.
    const alone = join(dir, "preferences-only");
    await cp(join(runDir, "salmon-aggregate"), join(alone, "salmon-aggregate"), { recursive: true });
    const flags = {
      run: alone,
      trainBase: model,
      seed,
      evalFraction: "0.25",
      evalEvery: "3",
      trainMaxSteps: "3",
      trainRank: "4",
      trainThreads: "1",
      trainBatchTokens: "4096",
    };
    await expect(runStageCommand("salmon-dpo", flags)).rejects.toThrow(
      /starts from the SFT adapter .* set stages\.salmon-dpo\.policy to "base" or an adapter/,
    );
    await expect(runStageCommand("salmon-dpo", { ...flags, policy: "base", reference: "sft" })).rejects.toThrow(
      /compares with the SFT adapter/,
    );
    await expect(
      runStageCommand("salmon-dpo", { ...flags, policy: "base", reference: join(dir, "missing.gguf") }),
    ).rejects.toThrow(/stages\.salmon-dpo\.reference: no adapter at/);
    // A fresh LoRA on the base, against the base: the policy starts equal to the reference.
    const summary = await runStageCommand("salmon-dpo", { ...flags, policy: "base", reference: "base" });
    expect(summary).toMatch(/^salmon-dpo: 4 pairs, 3 steps, final loss \d\.\d{4}, held-out accuracy/);
    const manifest = (await readManifest(join(alone, "salmon-dpo", "manifest.json")))!;
    expect(manifest.extra).toMatchObject({ policyStart: "base", reference: "base" });
    const held = await jsonLines(join(alone, "salmon-dpo", "adapter", "eval.jsonl"));
    expect(held[0]!.margin).toBeCloseTo(0, 6);
    expect(held.at(-1)!.margin!).toBeGreaterThan(0);
  });
});
