import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../src/gguf/index.js";
import { loadAdapter } from "../src/training/embedded/adapter-source.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { TsKernel } from "../src/training/embedded/kernels/ts-kernel.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { packWhole, rewardLoss } from "../src/training/embedded/objectives/reward-objective.js";
import { kernelPrecision } from "../src/training/embedded/precision.js";
import { readSafetensors } from "../src/training/export/safetensors.js";
import { RewardModel } from "../src/training/reward/reward-model.js";
import type { TrainResult } from "../src/training/trainer.js";
import { markerPreferences } from "./fixtures/toy-preferences.js";
import { killWhen } from "./fixtures/kill-when.js";
import { trainKillTestReward } from "./fixtures/train-reward.js";

let dir: string;
let basePath: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reward-model-"));
  basePath = join(dir, "base.gguf");
  await writeTinyModel(basePath, { dim: 64, heads: 4, kvHeads: 2, ffn: 128, layers: 2, contextLength: 128, seed: 21 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("reward model", () => {
  const heldOut = markerPreferences(64, 7);
  let result: TrainResult;
  let out: string;

  // Trained once; the tests below read its results and its folder.
  beforeAll(async () => {
    out = join(dir, "rm");
    result = await new EmbeddedTrainer().train({
      kind: "reward",
      base: basePath,
      output: out,
      examples: markerPreferences(128, 3),
      evalExamples: heldOut,
      options: {
        rank: 8,
        targets: ["q", "k", "v", "o", "gate", "up", "down"],
        dropout: 0,
        kernel: "ts",
        epochs: 2,
        batchTokens: 256,
        learningRate: 5e-3,
        warmupSteps: 2,
        evalEvery: 8,
        checkpointEvery: 0,
      },
    });
  });

  it("learns a marker-word preference: held-out accuracy >= 90%, logged at each eval step", async () => {
    const first = result.evalCurve[0]!;
    const last = result.evalCurve.at(-1)!;
    expect(first.step).toBe(0);
    expect(first.accuracy).toBeLessThan(0.7);
    expect(last.step).toBe(result.steps);
    expect(last.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(last.loss).toBeLessThan(first.loss / 2);
    expect(result.evalCurve.map((e) => e.step)).toEqual([0, 8, 16, 24, 32, 40, 48, 52]);
    const lines = (await readFile(join(out, "eval.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toEqual(result.evalCurve);
    expect(result.lossCurve.every((p) => p.accuracy !== undefined && p.margin !== undefined)).toBe(true);

    // Export: GGUF LoRA + head file, and PEFT with score.weight [1, hidden] as LlamaForSequenceClassification has it.
    expect(result.rewardHeadPath).toBe(join(out, "reward-head.safetensors"));
    const head = (await readSafetensors(result.rewardHeadPath!)).tensors.get("score.weight")!;
    expect(head.shape).toEqual([1, 64]);
    const peft = (await readSafetensors(join(result.peftDir, "adapter_model.safetensors"))).tensors;
    const score = peft.get("base_model.model.score.weight")!;
    expect(score.shape).toEqual([1, 64]);
    expect(Array.from(score.data)).toEqual(Array.from(head.data));
    const config = JSON.parse(await readFile(join(result.peftDir, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({ task_type: "SEQ_CLS", modules_to_save: ["score"], r: 8 });
    const info = JSON.parse(await readFile(join(out, "reward-model.json"), "utf8"));
    expect(info).toMatchObject({ adapter: "adapter.gguf", head: "reward-head.safetensors", hidden: 64, addBos: true });
  });

  it("llama.cpp's reward (RewardModel) equals the trainer's forward within 1e-4", async () => {
    const reward = await RewardModel.load(out, { threads: 1 });
    const texts = heldOut.slice(0, 12).flatMap((p) => [p.prompt + p.chosen, p.prompt + p.rejected]);
    let served: number[];
    let tokenized: number[][];
    try {
      served = await reward.score(texts);
      tokenized = texts.map((text) => reward.tokenize(text));
    } finally {
      await reward.dispose();
    }
    // The trainer's forward: the same adapter and head, read back from the folder.
    const model = new LlamaTrainModel(await loadLlamaModel(basePath), kernelPrecision(new TsKernel()));
    const loaded = await loadAdapter(out, model.config);
    expect(loaded.head).toBeDefined();
    const sequences = tokenized.map((tokens) => ({ tokens: Int32Array.from(tokens) }));
    const batch = packWhole(sequences);
    let ours: Float64Array | undefined;
    model.forwardBackward(
      batch,
      loaded.adapter,
      undefined,
      rewardLoss(batch.lastRows, loaded.head!, undefined, (rewards) => {
        ours = rewards;
        return { loss: 0, dRewards: new Float64Array(rewards.length) };
      }),
    );
    let maxDiff = 0;
    served.forEach((r, i) => {
      maxDiff = Math.max(maxDiff, Math.abs(r - ours![i]!));
    });
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
    expect(Math.max(...served) - Math.min(...served)).toBeGreaterThan(0.5);
    // And it ranks the pairs as the held-out evaluation did.
    const right = heldOut.slice(0, 12).filter((_, k) => served[2 * k]! > served[2 * k + 1]!).length;
    expect(right).toBeGreaterThanOrEqual(10);
  });
});

describe("reward model training, killed", () => {
  it("a kill -9 during training, then resume, gives the loss and eval curves, adapter and head of an uninterrupted run", async () => {
    const whole = await trainKillTestReward(basePath, join(dir, "whole"));
    expect(whole.steps).toBe(14);
    const interrupted = join(dir, "killed");
    const step = await killDuringTraining(interrupted, 4);
    expect(step).toBeGreaterThanOrEqual(4);
    expect(step).toBeLessThan(14);
    const resumed = await trainKillTestReward(basePath, interrupted);
    expect(resumed.lossCurve).toEqual(whole.lossCurve);
    expect(resumed.evalCurve).toEqual(whole.evalCurve);
    for (const file of ["loss.jsonl", "eval.jsonl", "adapter.gguf", "reward-head.safetensors"]) {
      expect(await readFile(join(interrupted, file))).toEqual(await readFile(join(dir, "whole", file)));
    }
  });
});

const fixture = join(import.meta.dirname, "fixtures", "train-reward.ts");

async function checkpointStep(out: string): Promise<number> {
  const text = await readFile(join(out, "checkpoint", "state.json"), "utf8").catch(() => undefined);
  return text === undefined ? -1 : (JSON.parse(text) as { step: number }).step;
}

/** Train in a child process and kill -9 it once its checkpoint has reached `step`; returns the step it had. */
async function killDuringTraining(out: string, step: number): Promise<number> {
  await killWhen([fixture, basePath, out], async () => (await checkpointStep(out)) >= step, { what: "training" });
  expect((await stat(join(out, "adapter.gguf")).catch(() => undefined)) === undefined).toBe(true);
  return checkpointStep(out);
}
