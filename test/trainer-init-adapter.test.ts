/**
 * Training from an existing adapter (GGUF LoRA, PEFT folder, a training's output folder) starts exactly where that
 * adapter is: the first step's loss equals llama.cpp's cross-entropy with the adapter loaded. And the trainer decides
 * when a checkpoint is stale: set aside with a warning, put back when its settings return, or refused on request.
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../src/errors/index.js";
import { seededNormal, writeTinyModel } from "../src/gguf/index.js";
import type { ProgressEvent } from "../src/progress/progress-event.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { createLora } from "../src/training/embedded/lora.js";
import { writeGgufLora } from "../src/training/export/gguf-lora.js";
import { writePeftAdapter } from "../src/training/export/peft-adapter.js";
import type { SftExample, TrainOptions } from "../src/training/trainer.js";

const examples: SftExample[] = [
  { prompt: "Q: sky?\nA:", completion: " blue sky." },
  { prompt: "Q: grass?\nA:", completion: " green!" },
  { prompt: "Q: sun?\nA:", completion: " hot star" },
];

let dir: string;
let llama: Llama;
let basePath: string;
let adapterFile: string;
let peftDir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-init-"));
  basePath = join(dir, "base.gguf");
  await writeTinyModel(basePath, { dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 2, contextLength: 128, seed: 3 });
  llama = await getLlama({ gpu: false, build: "never" });
  // An adapter that moves the logits: random A (PEFT init) and random B.
  const config = (await loadLlamaModel(basePath)).config;
  const lora = createLora(config, {
    rank: 4,
    alpha: 8,
    targets: ["q", "k", "v", "o", "gate", "up", "down"],
    seed: 9,
    alloc: (n) => new Float32Array(n),
  });
  const normal = seededNormal(2);
  for (const m of lora.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal() * 0.3;
  adapterFile = join(dir, "start.gguf");
  await writeGgufLora(adapterFile, lora, "llama");
  peftDir = join(dir, "start-peft");
  await writePeftAdapter(peftDir, lora, config, { baseModelName: "base", dropout: 0 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Mean cross-entropy of the completion tokens of all examples under llama.cpp (optionally with an adapter). */
async function llamaCppLoss(adapter: string | undefined): Promise<number> {
  const model = await llama.loadModel({ modelPath: basePath });
  try {
    let total = 0;
    let count = 0;
    for (const example of examples) {
      const prompt = [model.tokens.bos!, ...model.tokenize(example.prompt)];
      const full = [model.tokens.bos!, ...model.tokenize(example.prompt + example.completion)];
      const context = await model.createContext({
        contextSize: 128,
        threads: 1,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
      });
      const items: ControlledEvaluateInputItem[] = full
        .slice(0, -1)
        .map((t) => [t, { generateNext: { logits: true } }]);
      const results = await context.getSequence().controlledEvaluate(items);
      for (let i = prompt.length - 1; i < full.length - 1; i++) {
        const values = [...results[i]!.next!.logits!.values()];
        const max = Math.max(...values);
        const logZ = max + Math.log(values.reduce((s, v) => s + Math.exp(v - max), 0));
        total += logZ - results[i]!.next!.logits!.get(full[i + 1]!)!;
        count++;
      }
      await context.dispose();
    }
    return total / count;
  } finally {
    await model.dispose();
  }
}

// One step over all examples, no dropout: the first loss point is the loss before any update.
const oneStep: TrainOptions = { kernel: "ts", maxSteps: 1, dropout: 0, batchTokens: 4096, checkpointEvery: 0 };

describe("training from an existing adapter", () => {
  it("starts where the adapter is, whether it is a GGUF LoRA, a PEFT folder or a training's output", async () => {
    const withAdapter = await llamaCppLoss(adapterFile);
    const base = await llamaCppLoss(undefined);
    expect(Math.abs(withAdapter - base)).toBeGreaterThan(0.05);

    const fresh = await new EmbeddedTrainer().train({
      base: basePath,
      examples,
      output: join(dir, "fresh"),
      options: oneStep,
    });
    expect(Math.abs(fresh.lossCurve[0]!.loss - base)).toBeLessThan(1e-4);

    const sources = [adapterFile, peftDir];
    const firstLosses: number[] = [];
    for (const [i, initAdapter] of sources.entries()) {
      const result = await new EmbeddedTrainer().train({
        base: basePath,
        examples,
        output: join(dir, `init-${i}`),
        initAdapter,
        options: { ...oneStep, learningRate: 1e-2 },
      });
      firstLosses.push(result.lossCurve[0]!.loss);
      // The exported adapter keeps the initial one's shape.
      const config = JSON.parse(await readFile(join(result.peftDir, "adapter_config.json"), "utf8"));
      expect(config).toMatchObject({ r: 4, lora_alpha: 8 });
      expect(config.target_modules).toHaveLength(7);
    }
    for (const loss of firstLosses) expect(Math.abs(loss - withAdapter)).toBeLessThan(1e-4);
    // A training's output folder (its adapter.gguf) continues from where that training ended.
    const continued = await new EmbeddedTrainer().train({
      base: basePath,
      examples,
      output: join(dir, "continued"),
      initAdapter: join(dir, "init-0"),
      options: oneStep,
    });
    const afterFirst = await llamaCppLoss(join(dir, "init-0", "adapter.gguf"));
    expect(Math.abs(continued.lossCurve[0]!.loss - afterFirst)).toBeLessThan(1e-4);
    expect(afterFirst).toBeLessThan(withAdapter);
  });

  it("refuses another rank than the adapter's, and an adapter for another architecture", async () => {
    const error = await new EmbeddedTrainer()
      .train({
        base: basePath,
        examples,
        output: join(dir, "bad"),
        initAdapter: adapterFile,
        options: { ...oneStep, rank: 8 },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain("the initial adapter has rank 4, alpha 8");
    expect((error as Error).message).toContain("rank 8 was asked for");

    const qwen = join(dir, "qwen.gguf");
    await writeTinyModel(qwen, {
      architecture: "qwen2",
      dim: 32,
      heads: 4,
      kvHeads: 2,
      ffn: 64,
      layers: 2,
      contextLength: 128,
    });
    const other = await new EmbeddedTrainer()
      .train({ base: qwen, examples, output: join(dir, "bad2"), initAdapter: adapterFile, options: oneStep })
      .catch((e: unknown) => e);
    expect((other as Error).message).toContain("the adapter was made for a llama model, but the base model is qwen2");
  });
});

describe("stale checkpoints", () => {
  it("are set aside with a warning, put back when their settings return, and refused on request", async () => {
    const out = join(dir, "stale");
    const options: TrainOptions = {
      kernel: "ts",
      maxSteps: 3,
      rank: 2,
      batchTokens: 20,
      checkpointEvery: 1,
      resume: true,
    };
    const messages: string[] = [];
    const onProgress = (e: ProgressEvent) => {
      if (e.type === "message") messages.push(e.text);
    };
    const first = await new EmbeddedTrainer().train({ base: basePath, examples, output: out, options, onProgress });
    // Other settings: the finished checkpoint is set aside, not resumed (that would mix two trainings).
    const changed = { ...options, learningRate: 1e-3 };
    const second = await new EmbeddedTrainer().train({
      base: basePath,
      examples,
      output: out,
      options: changed,
      onProgress,
    });
    expect(
      messages.some((m) => /made with other settings or data \(learningRate\).*kept in .*stale-checkpoints/.test(m)),
    ).toBe(true);
    const alone = await new EmbeddedTrainer().train({
      base: basePath,
      examples,
      output: join(dir, "alone"),
      options: changed,
    });
    expect(second.lossCurve).toEqual(alone.lossCurve);
    expect(second.lossCurve).not.toEqual(first.lossCurve);
    // The first settings again: their checkpoint comes back, already finished.
    messages.length = 0;
    let steps = 0;
    const third = await new EmbeddedTrainer().train({
      base: basePath,
      examples,
      output: out,
      options,
      onProgress: (e) => {
        onProgress(e);
        if (e.type === "train-step") steps++;
      },
    });
    expect(messages.some((m) => m.startsWith("resuming the checkpoint set aside in"))).toBe(true);
    expect(steps).toBe(0);
    expect(third.lossCurve).toEqual(first.lossCurve);
    expect(await readFile(third.adapterPath)).toEqual(await readFile(first.adapterPath));
    expect((await stat(join(out, "stale-checkpoints"))).isDirectory()).toBe(true);
    // Other data is stale too; with staleCheckpoint "error" it is refused.
    const refused = await new EmbeddedTrainer()
      .train({
        base: basePath,
        examples: examples.slice(1),
        output: out,
        options: { ...options, staleCheckpoint: "error" },
      })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as Error).message).toMatch(/cannot resume: .*different settings or data \(examples, data\)/);
  });
});
