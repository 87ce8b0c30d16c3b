/**
 * Dequantising the GGUF types selfalign reads (Q4_0, Q8_0 and the k-quants Q4_K, Q5_K, Q6_K): hand-made blocks
 * decode to the values worked out here, and a tiny model whose weights are random blocks of every type gives the
 * same logits in llama.cpp as the F32 model written from our dequantised weights.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildTinyModel,
  dequantize,
  float32ToFloat16Bits,
  GgufFile,
  type GgmlTypeName,
  ggmlBlockLayout,
  seededRandom,
  writeGguf,
} from "../src/gguf/index.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-quantized-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function putHalf(bytes: Uint8Array, at: number, value: number): void {
  const bits = float32ToFloat16Bits(value);
  bytes[at] = bits & 0xff;
  bytes[at + 1] = bits >> 8;
}

describe("dequantize on hand-made blocks", () => {
  it("Q4_0: element j from the low nibble of byte j, element j + 16 from its high nibble, minus 8, times d", () => {
    const block = new Uint8Array(18);
    putHalf(block, 0, 0.5);
    for (let j = 0; j < 16; j++) block[2 + j] = (j % 16) | ((15 - j) << 4);
    const values = dequantize("Q4_0", block, 32);
    for (let j = 0; j < 16; j++) {
      expect(values[j]).toBe(0.5 * (j - 8));
      expect(values[j + 16]).toBe(0.5 * (15 - j - 8));
    }
  });

  it("Q4_1, Q5_0 and Q5_1: a min added, and a fifth bit per element from a 32-bit word", () => {
    const random = seededRandom(3);
    for (const type of ["Q4_1", "Q5_0", "Q5_1"] as const) {
      const withMin = type !== "Q5_0";
      const five = type !== "Q4_1";
      const block = new Uint8Array(ggmlBlockLayout[type].bytes);
      for (let i = 0; i < block.length; i++) block[i] = Math.floor(random() * 256);
      putHalf(block, 0, 0.5);
      if (withMin) putHalf(block, 2, -1.25);
      const highAt = withMin ? 4 : 2;
      const quantsAt = highAt + (five ? 4 : 0);
      const values = dequantize(type, block, 32);
      for (let e = 0; e < 32; e++) {
        const byte = block[quantsAt + (e % 16)]!;
        let q = e < 16 ? byte & 0xf : byte >> 4;
        if (five) q += ((block[highAt + (e >> 3)]! >> (e & 7)) & 1) * 16;
        const expected = withMin ? 0.5 * q - 1.25 : 0.5 * (q - 16);
        expect(values[e]).toBeCloseTo(expected, 6);
      }
    }
  });

  it("Q4_K and Q5_K: 6-bit scales and mins per 32 elements, including the packed upper four", () => {
    for (const type of ["Q4_K", "Q5_K"] as const) {
      const five = type === "Q5_K";
      const block = new Uint8Array(ggmlBlockLayout[type].bytes);
      putHalf(block, 0, 0.5); // d
      putHalf(block, 2, 0.25); // dmin
      // Sub-blocks 0-3: scale in bytes 0-3 (low 6 bits), min in bytes 4-7. Their top 2 bits are the upper bits of
      // sub-blocks 4-7, whose low 4 bits sit in bytes 8-11 (scale low nibble, min high nibble).
      const scales = [3, 5, 7, 9, 33, 17, 2, 63];
      const mins = [1, 0, 4, 2, 18, 60, 7, 0];
      for (let j = 0; j < 4; j++) {
        block[4 + j] = scales[j]! | ((scales[j + 4]! >> 4) << 6);
        block[8 + j] = mins[j]! | ((mins[j + 4]! >> 4) << 6);
        block[12 + j] = (scales[j + 4]! & 0xf) | ((mins[j + 4]! & 0xf) << 4);
      }
      const quants = five ? 48 : 16;
      const random = seededRandom(5);
      for (let i = quants; i < quants + 128; i++) block[i] = Math.floor(random() * 256);
      if (five) for (let i = 16; i < 48; i++) block[i] = Math.floor(random() * 256);
      const values = dequantize(type, block, 256);
      for (let e = 0; e < 256; e++) {
        const sub = e >> 5; // 8 sub-blocks of 32
        const byte = block[quants + 32 * (sub >> 1) + (e & 31)]!;
        let q = sub % 2 === 0 ? byte & 0xf : byte >> 4;
        if (five && (block[16 + (e & 31)]! >> sub) & 1) q += 16;
        expect(values[e]).toBeCloseTo(0.5 * scales[sub]! * q - 0.25 * mins[sub]!, 5);
      }
    }
  });

  it("Q6_K: 4 low bits, 2 high bits, minus 32, times an int8 scale per 16 elements and d", () => {
    const block = new Uint8Array(210);
    const random = seededRandom(9);
    for (let i = 0; i < 208; i++) block[i] = Math.floor(random() * 256);
    putHalf(block, 208, 0.125);
    const values = dequantize("Q6_K", block, 256);
    const view = new DataView(block.buffer);
    for (let e = 0; e < 256; e++) {
      const half = e >> 7;
      const r = e & 127;
      const group = r >> 5; // four runs of 32 in each half
      const l = r & 31;
      const lowByte = block[64 * half + l + 32 * (group & 1)]!;
      const low = group >> 1 === 0 ? lowByte & 0xf : lowByte >> 4;
      const high = (block[128 + 32 * half + l]! >> (2 * group)) & 3;
      const scale = view.getInt8(192 + 8 * half + 2 * group + (l >> 4));
      expect(values[e]).toBeCloseTo(0.125 * scale * ((low | (high << 4)) - 32), 5);
    }
  });
});

describe("quantised weights in llama.cpp", () => {
  const scales: Partial<Record<GgmlTypeName, number>> = {
    Q4_0: 0.01,
    Q4_1: 0.01,
    Q5_0: 0.005,
    Q5_1: 0.005,
    Q8_0: 0.001,
    Q4_K: 2e-4,
    Q5_K: 1e-4,
    Q6_K: 5e-5,
  };

  /** Random blocks of `type` for `count` elements, with scales that keep the weights small. */
  function randomBlocks(type: GgmlTypeName, count: number, seed: number): Uint8Array {
    const { elements, bytes: size } = ggmlBlockLayout[type];
    const random = seededRandom(seed);
    const bytes = new Uint8Array((count / elements) * size);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
    for (let at = 0; at < bytes.length; at += size) {
      const scale = () => (0.5 + random()) * scales[type]!;
      if (type === "Q6_K") putHalf(bytes, at + 208, scale());
      else putHalf(bytes, at, scale());
      // The k-quants' dmin, or the min of Q4_1 and Q5_1 (about minus half the range, to centre the weights).
      if (type === "Q4_K" || type === "Q5_K") putHalf(bytes, at + 2, scale());
      if (type === "Q4_1" || type === "Q5_1") putHalf(bytes, at + 2, -8 * scale());
    }
    return bytes;
  }

  it("gives the logits of the F32 model written from our dequantised weights", async () => {
    const { metadata, tensors } = buildTinyModel({ layers: 2, dim: 256, heads: 4, kvHeads: 2, ffn: 512, seed: 4 });
    const types: GgmlTypeName[] = ["Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"];
    let next = 0;
    const quantized = tensors.map((tensor, i) => {
      if (tensor.dims.length !== 2) return tensor;
      const type = types[next++ % types.length]!;
      return { name: tensor.name, dims: tensor.dims, type, bytes: randomBlocks(type, tensor.data.length, 100 + i) };
    });
    expect(next).toBeGreaterThanOrEqual(types.length);
    const quantizedPath = join(dir, "quantized.gguf");
    await writeGguf(quantizedPath, { metadata, tensors: quantized });
    const file = await GgufFile.open(quantizedPath);
    const dequantized = [];
    for (const tensor of tensors)
      dequantized.push({ name: tensor.name, dims: tensor.dims, data: await file.readTensor(tensor.name) });
    await file.close();
    const floatPath = join(dir, "dequantized.gguf");
    await writeGguf(floatPath, { metadata, tensors: dequantized });

    const llama = await getLlama({ gpu: false });
    const logitsOf = async (path: string) => {
      const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
      try {
        const context = await model.createContext({ contextSize: 64, threads: 1 });
        const sequence = context.getSequence();
        const tokens = [1, 72, 101, 108, 108, 111, 33].map((t) => t as Token);
        const results = await sequence.controlledEvaluate(
          tokens.map((token) => [token, { generateNext: { logits: true } }] as const),
        );
        return results.map((result) => [...(result?.next?.logits?.values() ?? [])]);
      } finally {
        await model.dispose();
      }
    };
    const fromQuantized = await logitsOf(quantizedPath);
    const fromFloat = await logitsOf(floatPath);
    let worst = 0;
    let scale = 0;
    fromFloat.forEach((row, i) => {
      expect(row.length).toBeGreaterThan(200);
      row.forEach((value, j) => {
        worst = Math.max(worst, Math.abs(value - fromQuantized[i]![j]!));
        scale = Math.max(scale, Math.abs(value));
      });
    });
    // llama.cpp multiplies quantised weights by quantised activations, so agreement is close, not exact.
    expect(scale).toBeGreaterThan(0.1);
    expect(worst / scale).toBeLessThan(0.03);

    // The embedded trainer trains on the quantised base, and llama.cpp applies the adapter to that base.
    const example = { prompt: "Q: sky?\nA:", completion: " blue" };
    const trained = await new EmbeddedTrainer().train({
      base: quantizedPath,
      examples: [example],
      output: join(dir, "adapter"),
      options: {
        rank: 4,
        alpha: 8,
        learningRate: 1e-2,
        maxSteps: 15,
        warmupSteps: 2,
        kernel: "ts",
        checkpointEvery: 0,
      },
    });
    expect(trained.finalLoss).toBeLessThan(trained.lossCurve[0]!.loss - 1);
    const model = await llama.loadModel({ modelPath: quantizedPath, gpuLayers: 0 });
    try {
      const completionLogprob = async (adapter?: string) => {
        const context = await model.createContext({
          contextSize: 64,
          threads: 1,
          ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
        });
        const sequence = context.getSequence();
        const prompt = [1 as Token, ...model.tokenize(example.prompt)];
        const target = model.tokenize(example.prompt + example.completion).slice(prompt.length - 1);
        let total = 0;
        let tokens = prompt;
        for (const token of target) {
          const [result] = (
            await sequence.controlledEvaluate(
              tokens.map((t, i) => (i === tokens.length - 1 ? [t, { generateNext: { logits: true } }] : t)),
            )
          ).slice(-1);
          const values = [...(result?.next?.logits?.values() ?? [])];
          const max = Math.max(...values);
          total +=
            (result?.next?.logits?.get(token) ?? Number.NaN) -
            max -
            Math.log(values.reduce((sum, v) => sum + Math.exp(v - max), 0));
          tokens = [token];
        }
        await context.dispose();
        return total;
      };
      expect(await completionLogprob(trained.adapterPath)).toBeGreaterThan((await completionLogprob()) + 1);
    } finally {
      await model.dispose();
    }
  });
});
