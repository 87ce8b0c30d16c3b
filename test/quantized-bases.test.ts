/**
 * Quantised bases as users bring them: Q4_K_M, Q5_K_M and Q8_0 files written here from an F16 model with
 * llama-quantize's per-tensor types. Every dequantised row equals llama.cpp's own dequantisation: a model whose only
 * path from token to logits is the (quantised) embedding row, through zero layers and an identity head, shows
 * llama.cpp's decoded row in its logits. An adapter trained on the Q4_K_M base works on it and on the F16 base; one
 * trained on the F16 base works on the Q5_K_M and Q8_0 bases.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildTinyModel,
  dequantize,
  float32ToFloat16Bits,
  GgufFile,
  type GgmlTypeName,
  ggmlBlockLayout,
  ggmlTypeName,
  gguf,
  quantize,
  quantizeModel,
  quantizedTypes,
  seededNormal,
  seededRandom,
  writeGguf,
  writeTinyModel,
} from "../src/gguf/index.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import type { SftExample } from "../src/training/trainer.js";

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-quantized-bases-"));
  llama = await getLlama({ gpu: false, build: "never" });
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const dim = 256;
const vocab = 354;

/** Random blocks of `type` (any bit pattern) with a positive half-precision scale kept small. */
function randomBlocks(type: GgmlTypeName, count: number, seed: number): Uint8Array {
  const { elements, bytes: size } = ggmlBlockLayout[type];
  const random = seededRandom(seed);
  const bytes = new Uint8Array((count / elements) * size);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  const put = (at: number, value: number) => {
    const bits = float32ToFloat16Bits(value);
    bytes[at] = bits & 0xff;
    bytes[at + 1] = bits >> 8;
  };
  for (let at = 0; at < bytes.length; at += size) {
    if (type === "Q6_K") put(at + 208, 1e-3 * (0.5 + random()));
    else put(at, 1e-3 * (0.5 + random()));
    // The k-quants' dmin, and Q4_1/Q5_1's min (about minus half their range, so the weights centre on zero).
    if (type === "Q4_K" || type === "Q5_K") put(at + 2, 1e-3 * random());
    if (type === "Q4_1" || type === "Q5_1") put(at + 2, -8e-3 * (0.5 + random()));
  }
  return bytes;
}

/**
 * llama.cpp's dequantisation of every row of a `type` embedding table: one layer whose attention and MLP outputs are
 * zero, an output norm of ones with epsilon 1 (so the logits keep the row's scale) and an identity head, so the
 * logits of token t are the decoded row t times 1/sqrt(mean square + 1).
 */
async function llamaCppRows(type: GgmlTypeName, bytes: Uint8Array): Promise<Float32Array[]> {
  const { metadata, tensors } = buildTinyModel({ layers: 1, dim, heads: 4, kvHeads: 2, ffn: 256, seed: 4 });
  metadata["llama.attention.layer_norm_rms_epsilon"] = gguf.f32(1);
  const patched = tensors.map((tensor) => {
    if (tensor.name === "token_embd.weight") return { name: tensor.name, dims: tensor.dims, type, bytes };
    if (/attn_output|ffn_down/.test(tensor.name)) return { ...tensor, data: new Float32Array(tensor.data.length) };
    if (tensor.name === "output_norm.weight") return { ...tensor, data: new Float32Array(dim).fill(1) };
    if (tensor.name === "output.weight") {
      const identity = new Float32Array(dim * vocab);
      for (let j = 0; j < dim; j++) identity[j * dim + j] = 1;
      return { ...tensor, data: identity };
    }
    return tensor;
  });
  const path = join(dir, `rows-${type}.gguf`);
  await writeGguf(path, { metadata, tensors: patched });
  const model = await llama.loadModel({ modelPath: path });
  try {
    const context = await model.createContext({
      contextSize: 512,
      threads: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    const tokens = Array.from({ length: vocab }, (_, t) => t as Token);
    const results = await context
      .getSequence()
      .controlledEvaluate(tokens.map((t): ControlledEvaluateInputItem => [t, { generateNext: { logits: true } }]));
    return results.map((result) =>
      Float32Array.from({ length: dim }, (_, j) => result!.next!.logits!.get(j as Token)!),
    );
  } finally {
    await model.dispose();
  }
}

describe("dequantisation equals llama.cpp's, row by row", () => {
  const cases: Array<[GgmlTypeName, "random" | "quantised"]> = [
    ...(["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"] as const).map(
      (type): [GgmlTypeName, "random"] => [type, "random"],
    ),
    ...quantizedTypes.map((type): [GgmlTypeName, "quantised"] => [type, "quantised"]),
  ];
  it.each(cases)("%s from %s blocks", async (type, source) => {
    const normal = seededNormal(7);
    const values = Float32Array.from({ length: dim * vocab }, () => normal() * 0.05);
    const bytes =
      source === "random"
        ? randomBlocks(type, values.length, 11)
        : quantize(type as (typeof quantizedTypes)[number], values);
    const ours = dequantize(type, bytes, values.length);
    const theirs = await llamaCppRows(type, bytes);
    let worst = 0;
    let largest = 0;
    for (let t = 0; t < vocab; t++) {
      const row = ours.subarray(t * dim, (t + 1) * dim);
      let sum = 0;
      for (const value of row) sum += value * value;
      const scale = Math.fround(1 / Math.sqrt(Math.fround(sum / dim) + 1));
      for (let j = 0; j < dim; j++) {
        const expected = Math.fround(row[j]! * scale);
        worst = Math.max(worst, Math.abs(theirs[t]![j]! - expected) / (Math.abs(expected) + 1e-9));
        largest = Math.max(largest, Math.abs(expected));
      }
    }
    expect(largest).toBeGreaterThan(1e-3);
    expect(worst).toBeLessThan(1e-6);
  });

  it("quantising keeps the error of each type within its bits", () => {
    const normal = seededNormal(3);
    const values = Float32Array.from({ length: 256 * 64 }, () => normal() * 0.05);
    const bounds = { Q8_0: 0.01, Q6_K: 0.03, Q5_K: 0.06, Q4_K: 0.12 } as const;
    for (const type of quantizedTypes) {
      const back = dequantize(type, quantize(type, values), values.length);
      let error = 0;
      let norm = 0;
      for (let i = 0; i < values.length; i++) {
        error += (back[i]! - values[i]!) ** 2;
        norm += values[i]! ** 2;
      }
      expect(Math.sqrt(error / norm), type).toBeLessThan(bounds[type]);
    }
  });
});

describe("Q4_K_M, Q5_K_M and Q8_0 bases written from an F16 model", () => {
  const examples: SftExample[] = [
    { prompt: "Q: sky?\nA:", completion: " blue sky." },
    { prompt: "Q: grass?\nA:", completion: " green!" },
  ];

  async function completionLogprob(model: LlamaModel, adapter?: string): Promise<number> {
    const context = await model.createContext({
      contextSize: 64,
      sequences: examples.length,
      threads: 1,
      ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
    });
    try {
      let total = 0;
      for (const example of examples) {
        const prompt = [model.tokens.bos!, ...model.tokenize(example.prompt)];
        const full = [model.tokens.bos!, ...model.tokenize(example.prompt + example.completion)];
        const sequence = context.getSequence();
        const results = await sequence.controlledEvaluate(
          full.slice(0, -1).map((t): ControlledEvaluateInputItem => [t, { generateNext: { logits: true } }]),
        );
        for (let i = prompt.length - 1; i < full.length - 1; i++) {
          const logits = results[i]!.next!.logits!;
          let max = Number.NEGATIVE_INFINITY;
          for (const value of logits.values()) max = Math.max(max, value);
          let sum = 0;
          for (const value of logits.values()) sum += Math.exp(value - max);
          total += logits.get(full[i + 1]!)! - max - Math.log(sum);
        }
      }
      return total;
    } finally {
      await context.dispose();
    }
  }

  const train = (base: string, name: string) =>
    new EmbeddedTrainer().train({
      base,
      examples,
      output: join(dir, name),
      options: {
        rank: 4,
        alpha: 8,
        dropout: 0,
        targets: ["q", "v", "o", "down"],
        learningRate: 1e-2,
        maxSteps: 15,
        warmupSteps: 2,
        kernel: "ts",
        checkpointEvery: 0,
      },
    });

  it("has llama-quantize's tensor types, and adapters trained on one base work on the others", async () => {
    const f16 = join(dir, "base-f16.gguf");
    await writeTinyModel(f16, { layers: 8, dim, heads: 4, kvHeads: 2, ffn: 512, seed: 6, dtype: "F16" });
    const paths: Record<string, string> = { F16: f16 };
    for (const recipe of ["Q4_K_M", "Q5_K_M", "Q8_0"] as const) {
      paths[recipe] = join(dir, `base-${recipe}.gguf`);
      await quantizeModel(f16, paths[recipe], recipe);
    }
    // Q4_K_M: Q6_K for the output head and for attn_v / ffn_down of layers 0, 3, 6 and 7 of 8 (use_more_bits).
    const file = await GgufFile.open(paths.Q4_K_M!);
    const typeOf = (name: string) => ggmlTypeName(file.tensorInfo(name)!.type);
    expect(typeOf("output.weight")).toBe("Q6_K");
    expect(typeOf("token_embd.weight")).toBe("Q4_K");
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((l) => typeOf(`blk.${l}.attn_v.weight`))).toEqual([
      "Q6_K",
      "Q4_K",
      "Q4_K",
      "Q6_K",
      "Q4_K",
      "Q4_K",
      "Q6_K",
      "Q6_K",
    ]);
    expect(typeOf("blk.3.ffn_down.weight")).toBe("Q6_K");
    expect(typeOf("blk.1.attn_q.weight")).toBe("Q4_K");
    expect(typeOf("blk.0.attn_norm.weight")).toBe("F32");
    expect(file.value("general.file_type")).toBe(15);
    await file.close();

    const models: Record<string, LlamaModel> = {};
    for (const [name, path] of Object.entries(paths)) models[name] = await llama.loadModel({ modelPath: path });
    try {
      const base: Record<string, number> = {};
      for (const name of Object.keys(models)) base[name] = await completionLogprob(models[name]!);
      // The quantised bases are the F16 model, give or take their rounding.
      for (const name of ["Q4_K_M", "Q5_K_M", "Q8_0"]) expect(Math.abs(base[name]! - base.F16!)).toBeLessThan(3);

      const fromQ4 = await train(paths.Q4_K_M!, "adapter-q4");
      for (const name of ["Q4_K_M", "F16"])
        expect(await completionLogprob(models[name]!, fromQ4.adapterPath), name).toBeGreaterThan(base[name]! + 5);
      const fromF16 = await train(f16, "adapter-f16");
      for (const name of ["F16", "Q5_K_M", "Q8_0"])
        expect(await completionLogprob(models[name]!, fromF16.adapterPath), name).toBeGreaterThan(base[name]! + 5);
    } finally {
      for (const model of Object.values(models)) await model.dispose();
    }
  });

  it("refuses rows that are not whole super-blocks, naming the tensor", async () => {
    const f16 = join(dir, "narrow.gguf");
    await writeTinyModel(f16, { layers: 1, dim: 64, heads: 4, kvHeads: 2, ffn: 128, seed: 2, dtype: "F16" });
    await expect(quantizeModel(f16, join(dir, "narrow-q4.gguf"), "Q4_K_M")).rejects.toThrow(
      /tensor token_embd\.weight has rows of 64 values, not whole Q4_K blocks of 256/,
    );
  });
});
