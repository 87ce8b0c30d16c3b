import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Llama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFile } from "node:fs/promises";
import { buildTinyModel, encodeGguf, seededNormal, type TinyModelOptions, writeTinyModel } from "../src/gguf/index.js";
import { TsKernel } from "../src/training/embedded/kernels/ts-kernel.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { createLora, loraTargets } from "../src/training/embedded/lora.js";
import { writeGgufLora } from "../src/training/export/gguf-lora.js";
import { kernelPrecision } from "../src/training/embedded/precision.js";

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-forward-"));
  llama = await getLlama({ gpu: false, build: "never" });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function llamaCppLogits(path: string, tokens: number[], adapter?: string): Promise<number[][]> {
  const model = await llama.loadModel({ modelPath: path });
  try {
    const context = await model.createContext({
      contextSize: 64,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      threads: 1,
      ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
    });
    const items: ControlledEvaluateInputItem[] = tokens.map((t) => [t as Token, { generateNext: { logits: true } }]);
    const results = await context.getSequence().controlledEvaluate(items);
    const vocab = model.tokens.bos === null ? 0 : 354;
    return results.map((r) => {
      const map = r?.next?.logits;
      if (!map) throw new Error("no logits");
      return Array.from({ length: vocab }, (_, i) => map.get(i as Token) ?? Number.NaN);
    });
  } finally {
    await model.dispose();
  }
}

const cases: Array<[string, TinyModelOptions]> = [
  [
    "llama, normal RoPE, GQA 4/2",
    { architecture: "llama", dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 2, seed: 3 },
  ],
  [
    "qwen2, NeoX RoPE + qkv bias, GQA 4/1",
    { architecture: "qwen2", dim: 32, heads: 4, kvHeads: 1, ffn: 48, layers: 2, seed: 5 },
  ],
  [
    "qwen3, q/k norms, 4 heads of 16 on a 32-wide model",
    { architecture: "qwen3", dim: 32, heads: 4, headDim: 16, kvHeads: 2, ffn: 48, layers: 2, seed: 21 },
  ],
  [
    "phi3, q/k/v and gate/up stored fused",
    { architecture: "phi3", dim: 32, heads: 4, kvHeads: 2, ffn: 48, layers: 2, seed: 27 },
  ],
  [
    "gemma2, scaled embeddings, post-norms, GeGLU, soft-capped scores and logits, sliding window of 5",
    {
      architecture: "gemma2",
      dim: 32,
      heads: 2,
      headDim: 16,
      kvHeads: 1,
      ffn: 64,
      layers: 2,
      seed: 23,
      extras: { slidingWindow: 5, attentionSoftcap: 3, finalSoftcap: 6 },
    },
  ],
  [
    "gemma3, q/k norms, post-norms, a sliding layer (RoPE base 500, window 6) and a global one",
    {
      architecture: "gemma3",
      dim: 32,
      heads: 4,
      headDim: 12,
      kvHeads: 2,
      ffn: 64,
      layers: 2,
      seed: 25,
      extras: { slidingWindow: 6, slidingWindowPattern: 2, ropeFreqBaseSwa: 500, finalSoftcap: 8 },
    },
  ],
  [
    "llama, tied embeddings, no GQA, rope base 5000",
    {
      architecture: "llama",
      dim: 48,
      heads: 3,
      kvHeads: 3,
      ffn: 64,
      layers: 1,
      seed: 7,
      tiedEmbeddings: true,
      ropeFreqBase: 5000,
    },
  ],
];

describe("embedded forward pass equals llama.cpp", () => {
  for (const [name, options] of cases) {
    it(name, async () => {
      const path = join(dir, `${name.replace(/\W+/g, "-")}.gguf`);
      await writeTinyModel(path, { contextLength: 64, ...options });
      const tokens = Array.from({ length: 21 }, (_, i) => (i * 37 + 11) % 354);
      const expected = await llamaCppLogits(path, tokens);
      const model = new LlamaTrainModel(await loadLlamaModel(path), kernelPrecision(new TsKernel()));
      const logits = model.logits({
        tokens: Int32Array.from(tokens),
        positions: Int32Array.from(tokens, (_, i) => i),
        segments: { starts: Int32Array.from([0, tokens.length]) },
      });
      let maxDiff = 0;
      let maxAbs = 0;
      for (let t = 0; t < tokens.length; t++) {
        for (let j = 0; j < 354; j++) {
          maxDiff = Math.max(maxDiff, Math.abs(logits[t * 354 + j]! - expected[t]![j]!));
          maxAbs = Math.max(maxAbs, Math.abs(expected[t]![j]!));
        }
      }
      expect(maxAbs).toBeGreaterThan(0.5);
      expect(maxDiff).toBeLessThanOrEqual(1e-4);
    });
  }

  const loraCases: TinyModelOptions[] = [
    { architecture: "llama" },
    { architecture: "qwen2" },
    { architecture: "qwen3", headDim: 12 },
    { architecture: "gemma2", headDim: 12, extras: { slidingWindow: 4, attentionSoftcap: 4, finalSoftcap: 6 } },
    { architecture: "gemma3", extras: { slidingWindow: 4, slidingWindowPattern: 2, finalSoftcap: 6 } },
    // The seven LoRAs become three on phi3's stored tensors: attn_qkv and ffn_up (rank 3r and 2r), attn_output,
    // ffn_down.
    { architecture: "phi3" },
  ];
  for (const variant of loraCases) {
    const architecture = variant.architecture!;
    it(`with a GGUF LoRA on all seven projections (${architecture})`, async () => {
      const path = join(dir, `lora-${architecture}.gguf`);
      await writeTinyModel(path, {
        dim: 32,
        heads: 4,
        kvHeads: 2,
        ffn: 48,
        layers: 2,
        seed: 13,
        contextLength: 64,
        ...variant,
      });
      const model = new LlamaTrainModel(await loadLlamaModel(path), kernelPrecision(new TsKernel()));
      const lora = createLora(model.config, {
        rank: 4,
        alpha: 8,
        targets: loraTargets,
        seed: 2,
        alloc: (n) => new Float32Array(n),
      });
      const normal = seededNormal(17);
      for (const m of lora.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal() * 0.2;
      const adapterPath = join(dir, `lora-${architecture}-adapter.gguf`);
      await writeGgufLora(adapterPath, lora, architecture, undefined, model.config);
      const tokens = Array.from({ length: 15 }, (_, i) => (i * 53 + 7) % 354);
      const expected = await llamaCppLogits(path, tokens, adapterPath);
      const base = await llamaCppLogits(path, tokens);
      const logits = model.logits(
        {
          tokens: Int32Array.from(tokens),
          positions: Int32Array.from(tokens, (_, i) => i),
          segments: { starts: Int32Array.from([0, tokens.length]) },
        },
        lora,
      );
      let maxDiff = 0;
      let moved = 0;
      for (let t = 0; t < tokens.length; t++) {
        for (let j = 0; j < 354; j++) {
          maxDiff = Math.max(maxDiff, Math.abs(logits[t * 354 + j]! - expected[t]![j]!));
          moved = Math.max(moved, Math.abs(base[t]![j]! - expected[t]![j]!));
        }
      }
      expect(moved).toBeGreaterThan(0.05);
      expect(maxDiff).toBeLessThanOrEqual(1e-4);
    });
  }

  it("llama with rope_freqs.weight (LLaMA 3 frequency factors)", async () => {
    const { metadata, tensors } = buildTinyModel({
      dim: 32,
      heads: 2,
      kvHeads: 1,
      ffn: 48,
      layers: 1,
      seed: 19,
      contextLength: 64,
    });
    tensors.push({ name: "rope_freqs.weight", dims: [8], data: Float32Array.from([1, 1, 1.5, 2, 3, 4, 6, 8]) });
    const path = join(dir, "rope-freqs.gguf");
    await writeFile(path, encodeGguf({ metadata, tensors }));
    const tokens = Array.from({ length: 20 }, (_, i) => (i * 29 + 3) % 354);
    const expected = await llamaCppLogits(path, tokens);
    const loaded = await loadLlamaModel(path);
    expect(loaded.weights.ropeFactors?.length).toBe(8);
    const logits = new LlamaTrainModel(loaded, kernelPrecision(new TsKernel())).logits({
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from(tokens, (_, i) => i),
      segments: { starts: Int32Array.from([0, tokens.length]) },
    });
    let maxDiff = 0;
    for (let t = 0; t < tokens.length; t++) {
      for (let j = 0; j < 354; j++) maxDiff = Math.max(maxDiff, Math.abs(logits[t * 354 + j]! - expected[t]![j]!));
    }
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
  });

  it("two packed sequences give the same logits as each alone", async () => {
    const path = join(dir, "packed.gguf");
    await writeTinyModel(path, { dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 1, seed: 9 });
    const model = new LlamaTrainModel(await loadLlamaModel(path), kernelPrecision(new TsKernel()));
    const a = [1, 40, 50, 60, 70];
    const b = [1, 90, 91];
    const run = (seqs: number[][]) =>
      model.logits({
        tokens: Int32Array.from(seqs.flat()),
        positions: Int32Array.from(seqs.flatMap((s) => s.map((_, i) => i))),
        segments: { starts: Int32Array.from([0, ...seqs.map((_, i) => seqs.slice(0, i + 1).flat().length)]) },
      });
    const packed = run([a, b]);
    const alone = [...run([a]), ...run([b])];
    for (let i = 0; i < packed.length; i++) expect(Math.abs(packed[i]! - alone[i]!)).toBeLessThan(1e-5);
  });
});
