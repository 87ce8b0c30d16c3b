/**
 * `selfalign stage salmon-rl` with the embedded trainer (the default): PPO of an SFT adapter against a real reward
 * model folder on a tiny GGUF. Each rollout's record holds the reward model's score of its reviewer prompt (the
 * interventions and three RL principles drawn for it), recomputed here through llama.cpp, plus the symbolic rewards;
 * a prompt too long for queryLength is rejected; the policy adapter is exported and recorded in the manifest; usage
 * is counted; the report draws the curves; a second run resumes at the end without redoing anything.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runStageCommand } from "../src/cli/commands/stage.js";
import { defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { collectReportData } from "../src/report/report-data.js";
import { readJsonl } from "../src/run-store/index.js";
import type { SalmonRolloutRecord } from "../src/stages/salmon/ppo-stage.js";
import { rlReviewerText, symbolicReward } from "../src/stages/salmon/rl-reward.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import type { PpoCurvePoint } from "../src/training/embedded/ppo/ppo-trainer.js";
import { RewardModel } from "../src/training/reward/reward-model.js";
import { markerPreferences } from "./fixtures/toy-preferences.js";

let dir: string;
let base: string;
let rewardDir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-salmon-ppo-"));
  base = join(dir, "base.gguf");
  await writeTinyModel(base, { seed: 9, contextLength: 2048 });
  rewardDir = join(dir, "reward-model");
  // A (barely trained) reward model folder: LoRA + head, as salmon-reward-model writes it.
  await new EmbeddedTrainer().train({
    kind: "reward",
    base,
    output: rewardDir,
    examples: markerPreferences(8, 5),
    options: { rank: 4, kernel: "ts", maxSteps: 2, batchTokens: 256, checkpointEvery: 0 },
  });
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("selfalign stage salmon-rl --trainer embedded", () => {
  it("runs PPO against the reward model, stores every rollout with its reward parts and exports the policy", async () => {
    const runDir = join(dir, "run");
    const prompts = join(dir, "prompts.jsonl");
    const long = `Explain this in detail: ${"a long sentence about the weather. ".repeat(4)}`.trim();
    await writeFile(
      prompts,
      ["Write a haiku.", "Name a colour.", "Add 2 and 3.", long]
        .map((instruction) => `${JSON.stringify({ instruction })}\n`)
        .join(""),
    );
    const options = {
      run: runDir,
      trainBase: base,
      promptsPath: prompts,
      promptType: "reasoning",
      embeddedRewardModel: rewardDir,
      // The reward model's LoRA as the "SFT" adapter: PPO starts from it and the reference is it.
      embeddedSftAdapter: join(rewardDir, "adapter.gguf"),
      embeddedRolloutBatch: 4,
      embeddedStepBatch: 2,
      embeddedMaxSteps: 3,
      embeddedResponseLength: 10,
      embeddedQueryLength: 400,
      embeddedLearningRate: 1e-2,
      // Short responses: a length scale of 10 tokens makes the bonus visible.
      embeddedRewardLengthScale: 10,
    };
    const summary = await runStageCommand("salmon-rl", options);
    expect(summary).toContain("3 PPO steps on 3 prompts (1 too long)");
    const out = join(runDir, "salmon-rl", "ppo");
    expect(summary).toContain(`policy adapter ${join(out, "adapter.gguf")}`);

    const records = (await readJsonl<SalmonRolloutRecord>(join(runDir, "salmon-rl-rollouts", "records.jsonl"))).records;
    expect(records).toHaveLength(12);
    expect(records.map((r) => r.step)).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
    const rejected = (
      await readJsonl<{ filter: string; instruction: string }>(join(runDir, "salmon-rl-rollouts", "rejected.jsonl"))
    ).records;
    expect(rejected.map((r) => [r.filter, r.instruction])).toEqual([["query-length", long]]);

    // Every reward recomputed independently: the reviewer prompt scored by llama.cpp, plus the symbolic rewards.
    const constitution = await loadConstitution(defaultConstitutionDir());
    const rlIds = new Set(constitution.salmon!.rlPrinciples.map((p) => p.id));
    const model = await RewardModel.load(rewardDir, { base, threads: 1 });
    try {
      for (const record of records) {
        const item = { instruction: record.instruction, response: record.output, promptType: "reasoning" as const };
        const reviewer = rlReviewerText(constitution, item, { principles: 3, seed: 0 });
        expect(record.principles).toEqual(reviewer.principles);
        expect(record.principles.every((id) => rlIds.has(id))).toBe(true);
        const [score] = await model.score([reviewer.text]);
        expect(record.score).toBeCloseTo(score!, 5);
        const expected = symbolicReward(
          { tokens: record.responseTokens, stopped: record.stopped, promptType: "reasoning" },
          {
            stopPenalty: -6,
            lengthBonus: 5,
            lengthScale: 10,
            lengthLimit: 0.8,
            lengthMultiplier: { general: 1, reasoning: -0.4, "red-teaming": 0 },
          },
        );
        expect(record.stopPenalty).toBe(expected.stopPenalty);
        expect(record.lengthBonus).toBeCloseTo(expected.lengthBonus, 12);
        expect(record.reward).toBeCloseTo(record.score + record.stopPenalty + record.lengthBonus, 12);
      }
    } finally {
      await model.dispose();
    }
    // Reasoning prompts: the length term is negative and clamped at -0.8 x 5 (symmetrically, unlike the reference).
    expect(records.some((r) => r.lengthBonus < 0)).toBe(true);
    expect(records.every((r) => r.lengthBonus >= -4)).toBe(true);

    const curve = (await readFile(join(out, "ppo.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as PpoCurvePoint);
    expect(curve).toHaveLength(3);
    // The first step's policy is the SFT adapter itself: no KL to the reference yet; then the policy moves.
    expect(curve[0]!.kl).toBeCloseTo(0, 6);
    expect(curve.slice(1).some((p) => Math.abs(p.kl) > 1e-4)).toBe(true);
    for (const [i, point] of curve.entries()) {
      const step = records.filter((r) => r.step === i + 1);
      expect(point.reward).toBeCloseTo(step.reduce((s, r) => s + r.reward, 0) / 4, 9);
      expect(point.parts.score).toBeCloseTo(step.reduce((s, r) => s + r.score, 0) / 4, 9);
    }

    // The policy adapter, in the manifest as every training's; usage counts the responses and both prompts.
    const manifest = JSON.parse(await readFile(join(runDir, "salmon-rl", "manifest.json"), "utf8"));
    expect(manifest.extra.adapter).toBe(join(out, "adapter.gguf"));
    expect(manifest.extra.ppo).toMatchObject({ steps: 3, rewardModel: rewardDir });
    expect((await stat(join(out, "peft", "adapter_model.safetensors"))).size).toBeGreaterThan(0);
    expect(await readFile(join(out, "adapter.gguf"))).not.toEqual(await readFile(join(rewardDir, "adapter.gguf")));
    const rollouts = JSON.parse(await readFile(join(runDir, "salmon-rl-rollouts", "manifest.json"), "utf8"));
    expect(rollouts.usage.completionTokens).toBe(records.reduce((s, r) => s + r.responseTokens, 0));
    expect(rollouts.usage.promptTokens).toBeGreaterThan(12 * 1000);

    const report = await collectReportData(runDir);
    expect(report.rlCurves).toEqual([
      {
        name: join("salmon-rl", "ppo", "ppo.jsonl"),
        points: curve.map(({ step, reward, kl, responseLength }) => ({ step, reward, kl, responseLength })),
      },
    ]);
    expect(report.records.filter((r) => r.stage === "salmon-rl-rollouts")).toHaveLength(13);

    // Again: the checkpoint is at the last step; nothing is rolled out or stored twice.
    const again = await runStageCommand("salmon-rl", options);
    expect(again).toContain("3 PPO steps on 3 prompts");
    expect((await readJsonl(join(runDir, "salmon-rl-rollouts", "records.jsonl"))).records).toHaveLength(12);
    expect((await readFile(join(out, "ppo.jsonl"), "utf8")).trim().split("\n")).toHaveLength(3);
  }, 240_000);

  it("says what is missing: a training base, a reward model", async () => {
    const prompts = join(dir, "one.jsonl");
    await writeFile(prompts, `${JSON.stringify({ instruction: "Hi." })}\n`);
    await expect(runStageCommand("salmon-rl", { run: join(dir, "no-base"), promptsPath: prompts })).rejects.toThrow(
      /trains on a local GGUF.*--train-base/,
    );
    await expect(
      runStageCommand("salmon-rl", { run: join(dir, "no-rm"), promptsPath: prompts, trainBase: base }),
    ).rejects.toThrow(/needs a reward model: run the salmon-reward-model stage first/);
  });
});
