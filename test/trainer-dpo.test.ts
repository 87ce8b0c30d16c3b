/**
 * DPO through the trainer's `preference` objective: on a hand-sized example the objective's loss, margin and accuracy
 * equal the closed form and its gradient equals finite differences (float64); the trainer's first step equals the
 * closed form from llama.cpp's log-probs of the policy and reference adapters; on a toy preference set the margin
 * rises and held-out preference accuracy exceeds 90%.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededNormal, writeTinyModel } from "../src/gguf/index.js";
import { resolveTrainOptions } from "../src/training/embedded/embedded-trainer.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import {
  createLora,
  type LoraAdapter,
  type LoraTarget,
  loraArrays,
  loraTargets,
  zerosLike,
} from "../src/training/embedded/lora.js";
import { buildPreferenceObjective } from "../src/training/embedded/objectives/preference-objective.js";
import { float64Precision, type Vec } from "../src/training/embedded/ops.js";
import type { TrainTokenizer } from "../src/training/embedded/sft-dataset.js";
import { writeGgufLora } from "../src/training/export/gguf-lora.js";
import type { PreferenceExample, PreferenceLoss } from "../src/training/trainer.js";
import { checkGradients, expectClose } from "./fixtures/finite-differences.js";
import { markerPreferences } from "./fixtures/toy-preferences.js";

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-dpo-"));
  llama = await getLlama({ gpu: false, build: "never" });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const normal = seededNormal(31);
function randomLora(
  config: LlamaTrainModel["config"],
  seed: number,
  alloc: (n: number) => Vec,
  targets: readonly LoraTarget[] = loraTargets,
): LoraAdapter {
  const lora = createLora(config, { rank: 2, alpha: 4, targets, seed, alloc });
  for (const m of lora.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal() * 0.3;
  return lora;
}

/** One token per character (ids below the byte vocabulary's 354), BOS 1. */
const charTokenizer: TrainTokenizer = { bos: 1, tokenize: (text) => Array.from(text, (c) => c.charCodeAt(0)) };

const handPairs: PreferenceExample[] = [
  { prompt: "Q: x?", chosen: " yes.", rejected: " no" },
  { prompt: "Q: yz?", chosen: " ok", rejected: " never!" },
];

/** log p(tokens[from..]) of one sequence from its full logits (the model's own logits path), by hand. */
function logProb(model: LlamaTrainModel, tokens: number[], from: number, lora?: LoraAdapter): number {
  const vocab = model.config.vocabSize;
  const logits = model.logits(
    {
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from(tokens, (_, i) => i),
      segments: { starts: Int32Array.from([0, tokens.length]) },
    },
    lora,
  );
  let total = 0;
  for (let t = from - 1; t < tokens.length - 1; t++) {
    const row = Array.from(logits.subarray(t * vocab, (t + 1) * vocab));
    const max = Math.max(...row);
    total += row[tokens[t + 1]!]! - max - Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
  }
  return total;
}

describe("DPO on a hand-sized example (float64)", () => {
  const variants: Array<{ name: string; loss: PreferenceLoss; labelSmoothing: number }> = [
    { name: "sigmoid", loss: "sigmoid", labelSmoothing: 0 },
    { name: "sigmoid with label smoothing (cDPO)", loss: "sigmoid", labelSmoothing: 0.2 },
    { name: "ipo", loss: "ipo", labelSmoothing: 0 },
  ];
  for (const { name, loss, labelSmoothing } of variants) {
    it(`${name}: the objective's loss, margin and accuracy equal the closed form; its gradient equals finite differences`, async () => {
      const path = join(dir, `hand-${loss}-${labelSmoothing}.gguf`);
      await writeTinyModel(path, { dim: 16, heads: 4, kvHeads: 2, ffn: 24, layers: 2, seed: 17 });
      const model = new LlamaTrainModel(await loadLlamaModel(path), float64Precision);
      // Every projection is covered by test/trainer-objectives.test.ts; three keep this check quick.
      const policy = randomLora(model.config, 1, float64Precision.alloc, ["q", "v", "down"]);
      const referenceLora = randomLora(model.config, 2, (n) => new Float32Array(n));
      const referencePath = join(dir, `reference-${loss}-${labelSmoothing}.gguf`);
      await writeGgufLora(referencePath, referenceLora, "llama");
      const beta = 0.7;
      const objective = await buildPreferenceObjective(
        handPairs,
        undefined,
        { beta, loss, labelSmoothing, reference: { adapter: referencePath } },
        {
          base: path,
          tokenizer: charTokenizer,
          maxLength: 64,
          options: resolveTrainOptions({ batchTokens: 64 }),
          config: model.config,
        },
      );
      objective.attach?.(model);

      // Closed form from log-probs computed independently, pair by pair.
      const tokens = (prompt: string, response: string) => [1, ...charTokenizer.tokenize(prompt + response)];
      let expectedLoss = 0;
      let expectedMargin = 0;
      let expectedCorrect = 0;
      for (const pair of handPairs) {
        const from = 1 + pair.prompt.length;
        const chosen = tokens(pair.prompt, pair.chosen);
        const rejected = tokens(pair.prompt, pair.rejected);
        const rc = logProb(model, chosen, from, policy) - logProb(model, chosen, from, referenceLora);
        const rr = logProb(model, rejected, from, policy) - logProb(model, rejected, from, referenceLora);
        if (loss === "ipo") {
          const h = rc / pair.chosen.length - rr / pair.rejected.length;
          expectedLoss += (h - 1 / (2 * beta)) ** 2 / 2;
          expectedMargin += beta * h;
          if (h > 0) expectedCorrect++;
        } else {
          const h = beta * (rc - rr);
          // −(1 − ε) log σ(h) − ε log σ(−h), written out.
          expectedLoss +=
            ((1 - labelSmoothing) * Math.log1p(Math.exp(-h)) + labelSmoothing * Math.log1p(Math.exp(h))) / 2;
          expectedMargin += h;
          if (h > 0) expectedCorrect++;
        }
      }
      const items = [0, 1];
      const evaluation = objective.run({ model, lora: policy, options: { dropout: 0 } }, "train", items, 2);
      expectClose(evaluation.loss, expectedLoss, 1e-9, 1e-12);
      expectClose(evaluation.margin, expectedMargin, 1e-9, 1e-12);
      expect(evaluation.correct).toBe(expectedCorrect);
      expect(evaluation.pairs).toBe(2);

      const options = { dropout: 0.15, dropoutSeed: 3, checkpoint: true };
      const grads = zerosLike(policy, float64Precision.alloc);
      objective.run({ model, lora: policy, grads, options }, "train", items, 2);
      const f = () => objective.run({ model, lora: policy, options }, "train", items, 2).loss;
      expect(checkGradients(f, loraArrays(policy), loraArrays(grads))).toBeGreaterThan(100);
    });
  }
});

/** Log-prob of a completion under llama.cpp with an adapter (or none). */
async function llamaCppLogProb(model: LlamaModel, adapter: string | undefined, prompt: string, response: string) {
  const promptTokens = [model.tokens.bos!, ...model.tokenize(prompt)];
  const full = [model.tokens.bos!, ...model.tokenize(prompt + response)];
  const context = await model.createContext({
    contextSize: 64,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
  });
  try {
    const items: ControlledEvaluateInputItem[] = full.slice(0, -1).map((t) => [t, { generateNext: { logits: true } }]);
    const results = await context.getSequence().controlledEvaluate(items);
    let total = 0;
    for (let i = promptTokens.length - 1; i < full.length - 1; i++) {
      const values = [...results[i]!.next!.logits!.values()];
      const max = Math.max(...values);
      total +=
        results[i]!.next!.logits!.get(full[i + 1]!)! -
        max -
        Math.log(values.reduce((s, v) => s + Math.exp(v - max), 0));
    }
    return total;
  } finally {
    await context.dispose();
  }
}

describe("DPO through the trainer", () => {
  let basePath: string;
  beforeAll(async () => {
    basePath = join(dir, "base.gguf");
    await writeTinyModel(basePath, {
      dim: 64,
      heads: 4,
      kvHeads: 2,
      ffn: 128,
      layers: 2,
      contextLength: 128,
      seed: 21,
    });
  });

  it("the first step's loss, margin and accuracy equal the closed form from llama.cpp's log-probs", async () => {
    const config = (await loadLlamaModel(basePath)).config;
    const paths: string[] = [];
    for (const seed of [5, 6]) {
      const lora = randomLora(config, seed, (n) => new Float32Array(n));
      paths.push(join(dir, `adapter-${seed}.gguf`));
      await writeGgufLora(paths.at(-1)!, lora, "llama");
    }
    const [policyPath, referencePath] = paths as [string, string];
    const beta = 0.2;
    const labelSmoothing = 0.1;
    const result = await new EmbeddedTrainer().train({
      kind: "preference",
      base: basePath,
      output: join(dir, "first-step"),
      examples: handPairs,
      initAdapter: policyPath,
      preference: { beta, labelSmoothing, reference: { adapter: referencePath } },
      options: { kernel: "ts", maxSteps: 1, dropout: 0, batchTokens: 4096, checkpointEvery: 0 },
    });
    const model = await llama.loadModel({ modelPath: basePath });
    let expectedLoss = 0;
    let expectedMargin = 0;
    try {
      for (const pair of handPairs) {
        const rc =
          (await llamaCppLogProb(model, policyPath, pair.prompt, pair.chosen)) -
          (await llamaCppLogProb(model, referencePath, pair.prompt, pair.chosen));
        const rr =
          (await llamaCppLogProb(model, policyPath, pair.prompt, pair.rejected)) -
          (await llamaCppLogProb(model, referencePath, pair.prompt, pair.rejected));
        const h = beta * (rc - rr);
        expectedLoss +=
          ((1 - labelSmoothing) * Math.log1p(Math.exp(-h)) + labelSmoothing * Math.log1p(Math.exp(h))) / 2;
        expectedMargin += h / 2;
      }
    } finally {
      await model.dispose();
    }
    const first = result.lossCurve[0]!;
    expect(Math.abs(expectedMargin)).toBeGreaterThan(0.01);
    expect(Math.abs(first.loss - expectedLoss)).toBeLessThan(1e-4);
    expect(Math.abs(first.margin! - expectedMargin)).toBeLessThan(1e-4);
    // The default reference is the adapter the policy starts from (the SFT adapter): the first step sits at log 2.
    const fromSft = await new EmbeddedTrainer().train({
      kind: "preference",
      base: basePath,
      output: join(dir, "from-sft"),
      examples: handPairs,
      initAdapter: policyPath,
      options: { kernel: "ts", maxSteps: 1, dropout: 0, batchTokens: 4096, checkpointEvery: 0 },
    });
    expect(fromSft.lossCurve[0]!.loss).toBeCloseTo(Math.log(2), 5);
    expect(fromSft.lossCurve[0]!.margin).toBeCloseTo(0, 5);
  });

  it("on a toy preference set the margin rises and held-out preference accuracy exceeds 90%", async () => {
    const events: Array<{ step: number; margin?: number }> = [];
    const result = await new EmbeddedTrainer().train({
      kind: "preference",
      base: basePath,
      output: join(dir, "toy"),
      examples: markerPreferences(64, 3),
      evalExamples: markerPreferences(64, 7),
      preference: { beta: 0.1 },
      options: {
        rank: 8,
        targets: ["q", "k", "v", "o", "gate", "up", "down"],
        dropout: 0,
        kernel: "ts",
        maxSteps: 16,
        batchTokens: 256,
        learningRate: 5e-3,
        warmupSteps: 2,
        evalEvery: 4,
        checkpointEvery: 0,
      },
      onProgress: (e) => {
        if (e.type === "train-step") events.push(e);
      },
    });
    // From the base, with the base as reference, the policy starts equal to it: loss log 2, margin 0.
    const start = result.evalCurve[0]!;
    expect(start.step).toBe(0);
    expect(start.loss).toBeCloseTo(Math.log(2), 6);
    expect(start.margin).toBeCloseTo(0, 6);
    const end = result.evalCurve.at(-1)!;
    expect(end.step).toBe(16);
    expect(end.accuracy).toBeGreaterThan(0.9);
    expect(end.margin).toBeGreaterThan(1);
    const margins = result.evalCurve.map((e) => e.margin!);
    for (let i = 1; i < margins.length - 1; i++) expect(margins[i]!).toBeGreaterThan(margins[i - 1]!);
    // The per-step margins (loss.jsonl, train-step events) rise too.
    const train = result.lossCurve.map((p) => p.margin!);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(train.slice(-4))).toBeGreaterThan(mean(train.slice(0, 4)) + 1);
    expect(events.map((e) => e.margin)).toEqual(train);
    const logged = (await readFile(join(dir, "toy", "loss.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(logged).toEqual(result.lossCurve);
  });

  it("interrupted and resumed, gives the loss curve and adapter of an uninterrupted run", async () => {
    const options = {
      rank: 4,
      dropout: 0.1,
      kernel: "ts" as const,
      maxSteps: 6,
      batchTokens: 96,
      gradientAccumulation: 2,
      learningRate: 5e-3,
      checkpointEvery: 2,
      evalFraction: 0.25,
      evalEvery: 2,
      seed: 3,
    };
    const request = {
      kind: "preference" as const,
      base: basePath,
      examples: markerPreferences(16, 5),
      preference: { beta: 0.3 },
    };
    const whole = await new EmbeddedTrainer().train({ ...request, output: join(dir, "dpo-whole"), options });
    const out = join(dir, "dpo-interrupted");
    const controller = new AbortController();
    await expect(
      new EmbeddedTrainer().train({
        ...request,
        output: out,
        options,
        signal: controller.signal,
        onProgress: (e) => {
          if (e.type === "train-step" && e.step === 3) controller.abort();
        },
      }),
    ).rejects.toThrow(/interrupted after step 3/);
    const resumed = await new EmbeddedTrainer().train({
      ...request,
      output: out,
      options: { ...options, resume: true },
    });
    expect(resumed.lossCurve).toEqual(whole.lossCurve);
    expect(resumed.evalCurve).toEqual(whole.evalCurve);
    expect(await readFile(resumed.adapterPath)).toEqual(await readFile(whole.adapterPath));
  });
});
