import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AbortedError, ConfigError } from "../src/errors/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { TsKernel } from "../src/training/embedded/kernels/ts-kernel.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { kernelPrecision } from "../src/training/embedded/precision.js";
import { readGgufLora } from "../src/training/export/gguf-lora.js";
import { convertPeftToGgufLora, readPeftAdapter } from "../src/training/export/peft-adapter.js";
import type { SftExample, TrainOptions } from "../src/training/trainer.js";

const examples: SftExample[] = [
  { prompt: "Q: sky?\nA:", completion: " blue sky." },
  { prompt: "Q: grass?\nA:", completion: " green!" },
  { prompt: "Q: sun?\nA:", completion: " hot star" },
  { prompt: "Q: snow?\nA:", completion: " cold" },
];

let dir: string;
let llama: Llama;
let basePath: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-train-"));
  basePath = join(dir, "base.gguf");
  await writeTinyModel(basePath, { dim: 64, heads: 4, kvHeads: 2, ffn: 128, layers: 2, contextLength: 256, seed: 21 });
  llama = await getLlama({ gpu: false, build: "never" });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withContext<T>(
  model: LlamaModel,
  adapter: string | undefined,
  use: (seq: ReturnType<Awaited<ReturnType<LlamaModel["createContext"]>>["getSequence"]>) => Promise<T>,
): Promise<T> {
  const context = await model.createContext({
    contextSize: 128,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
  });
  try {
    return await use(context.getSequence());
  } finally {
    await context.dispose();
  }
}

/** Log-probability of the completion tokens given BOS + prompt, from full logits. */
async function completionLogProb(model: LlamaModel, adapter: string | undefined, example: SftExample): Promise<number> {
  const prompt = [model.tokens.bos!, ...model.tokenize(example.prompt)];
  const full = [model.tokens.bos!, ...model.tokenize(example.prompt + example.completion)];
  return withContext(model, adapter, async (seq) => {
    const items: ControlledEvaluateInputItem[] = full.slice(0, -1).map((t) => [t, { generateNext: { logits: true } }]);
    const results = await seq.controlledEvaluate(items);
    let total = 0;
    for (let i = prompt.length - 1; i < full.length - 1; i++) {
      const logits = results[i]!.next!.logits!;
      const values = [...logits.values()];
      const max = Math.max(...values);
      const logZ = max + Math.log(values.reduce((s, v) => s + Math.exp(v - max), 0));
      total += logits.get(full[i + 1]!)! - logZ;
    }
    return total;
  });
}

async function greedy(model: LlamaModel, adapter: string, prompt: string, count: number): Promise<string> {
  const tokens: Token[] = [model.tokens.bos!, ...model.tokenize(prompt)];
  return withContext(model, adapter, async (seq) => {
    const out: Token[] = [];
    let pending: Token[] = tokens;
    for (let n = 0; n < count; n++) {
      const items: ControlledEvaluateInputItem[] = pending.map((t, i) =>
        i === pending.length - 1 ? [t, { generateNext: { logits: true } }] : t,
      );
      const results = await seq.controlledEvaluate(items);
      const logits = results.at(-1)!.next!.logits!;
      let best = -1 as Token;
      let bestValue = -Infinity;
      for (const [token, value] of logits) if (value > bestValue) [best, bestValue] = [token, value];
      out.push(best);
      pending = [best];
    }
    return model.detokenize(out);
  });
}

const fastOptions: TrainOptions = {
  rank: 8,
  alpha: 16,
  dropout: 0,
  targets: ["q", "k", "v", "o", "gate", "up", "down"],
  learningRate: 1e-2,
  maxSteps: 40,
  batchTokens: 64,
  warmupSteps: 3,
  schedule: "cosine",
  kernel: "ts",
  checkpointEvery: 0,
};

describe("embedded trainer", () => {
  it("learns the completions; node-llama-cpp with the exported adapter agrees", async () => {
    const out = join(dir, "run");
    const events: number[] = [];
    const result = await new EmbeddedTrainer().train({
      base: basePath,
      examples,
      output: out,
      options: fastOptions,
      onProgress: (e) => {
        if (e.type === "train-step") events.push(e.loss);
      },
    });
    expect(result.steps).toBe(40);
    expect(events).toHaveLength(40);
    expect(result.lossCurve[0]!.loss).toBeGreaterThan(2);
    expect(result.finalLoss).toBeLessThan(result.lossCurve[0]!.loss / 4);
    expect((await readFile(join(out, "loss.jsonl"), "utf8")).trim().split("\n")).toHaveLength(40);

    const model = await llama.loadModel({ modelPath: basePath });
    try {
      for (const example of examples) {
        const before = await completionLogProb(model, undefined, example);
        const after = await completionLogProb(model, result.adapterPath, example);
        expect(after).toBeGreaterThan(before + 5);
        expect(after).toBeGreaterThan(-3);
      }
      const completion = examples[0]!.completion;
      const generated = await greedy(model, result.adapterPath, examples[0]!.prompt, model.tokenize(completion).length);
      expect(generated.trim()).toBe(completion.trim());

      // Our forward with the trained LoRA equals llama.cpp with the GGUF adapter.
      const { adapter } = await readGgufLora(result.adapterPath);
      const ours = new LlamaTrainModel(await loadLlamaModel(basePath), kernelPrecision(new TsKernel()));
      const tokens = [model.tokens.bos!, ...model.tokenize(examples[1]!.prompt + examples[1]!.completion)];
      const logits = ours.logits(
        {
          tokens: Int32Array.from(tokens),
          positions: Int32Array.from(tokens, (_, i) => i),
          segments: { starts: Int32Array.from([0, tokens.length]) },
        },
        adapter,
      );
      const theirs = await withContext(model, result.adapterPath, (seq) =>
        seq.controlledEvaluate(tokens.map((t): ControlledEvaluateInputItem => [t, { generateNext: { logits: true } }])),
      );
      let maxDiff = 0;
      theirs.forEach((r, t) => {
        for (const [token, value] of r!.next!.logits!)
          maxDiff = Math.max(maxDiff, Math.abs(value - logits[t * 354 + token]!));
      });
      expect(maxDiff).toBeLessThan(1e-4);
    } finally {
      await model.dispose();
    }

    // The PEFT export reads back to the same adapter (q/k lora_B un-permuted and permuted again).
    const config = (await loadLlamaModel(basePath)).config;
    const peft = await readPeftAdapter(result.peftDir, config);
    const gguf = (await readGgufLora(result.adapterPath)).adapter;
    expect(peft.modules.length).toBe(gguf.modules.length);
    peft.modules.forEach((m, i) => {
      expect(Array.from(m.a)).toEqual(Array.from(gguf.modules[i]!.a));
      expect(Array.from(m.b)).toEqual(Array.from(gguf.modules[i]!.b));
    });
    // Import: PEFT -> GGUF LoRA gives back the trained tensors.
    await convertPeftToGgufLora(result.peftDir, basePath, join(out, "imported.gguf"));
    const imported = (await readGgufLora(join(out, "imported.gguf"))).adapter;
    expect(imported.rank).toBe(8);
    expect(imported.alpha).toBe(16);
    imported.modules.forEach((m, i) => {
      expect(Array.from(m.b)).toEqual(Array.from(gguf.modules[i]!.b));
    });
    const peftConfig = JSON.parse(await readFile(join(result.peftDir, "adapter_config.json"), "utf8"));
    expect(peftConfig).toMatchObject({ peft_type: "LORA", r: 8, lora_alpha: 16, task_type: "CAUSAL_LM" });
    expect(peftConfig.target_modules).toEqual([
      "q_proj",
      "k_proj",
      "v_proj",
      "o_proj",
      "gate_proj",
      "up_proj",
      "down_proj",
    ]);
  });

  it("resuming from a checkpoint gives the same loss curve and adapter as an uninterrupted run", async () => {
    const options: TrainOptions = {
      ...fastOptions,
      targets: ["q", "v", "down"],
      dropout: 0.1,
      maxSteps: undefined,
      epochs: 3,
      batchTokens: 24,
      gradientAccumulation: 2,
      weightDecay: 0.01,
      checkpointEvery: 2,
      seed: 5,
      activationCheckpointing: true,
      // The default kernel (BLAS or WASM on worker threads where available) must be deterministic for exact resume.
      kernel: "auto",
      threads: 2,
    };
    const whole = await new EmbeddedTrainer().train({ base: basePath, examples, output: join(dir, "whole"), options });
    expect(whole.steps).toBeGreaterThanOrEqual(5);

    const out = join(dir, "interrupted");
    const controller = new AbortController();
    await expect(
      new EmbeddedTrainer().train({
        base: basePath,
        examples,
        output: out,
        options,
        signal: controller.signal,
        onProgress: (e) => {
          if (e.type === "train-step" && e.step === 3) controller.abort();
        },
      }),
    ).rejects.toBeInstanceOf(AbortedError);
    const state = JSON.parse(await readFile(join(out, "checkpoint", "state.json"), "utf8"));
    expect(state.step).toBe(3);
    const resumed = await new EmbeddedTrainer().train({
      base: basePath,
      examples,
      output: out,
      options: { ...options, resume: true },
    });
    expect(resumed.lossCurve).toEqual(whole.lossCurve);
    expect(await readFile(join(out, "loss.jsonl"), "utf8")).toBe(
      await readFile(join(dir, "whole", "loss.jsonl"), "utf8"),
    );
    expect(await readFile(resumed.adapterPath)).toEqual(await readFile(whole.adapterPath));
    // With staleCheckpoint "error", a resume with different settings is refused, naming what differs.
    const mismatch = await new EmbeddedTrainer()
      .train({
        base: basePath,
        examples,
        output: out,
        options: { ...options, learningRate: 2e-2, resume: true, staleCheckpoint: "error" },
      })
      .catch((e: unknown) => e);
    expect(mismatch).toBeInstanceOf(ConfigError);
    expect((mismatch as Error).message).toContain(
      "cannot resume: the checkpoint was made with different settings or data (learningRate)",
    );
  });
});
