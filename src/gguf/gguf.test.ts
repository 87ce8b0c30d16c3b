import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { getLlama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { float16BitsToFloat32, float32ToFloat16Bits } from "./float16.js";
import { GgufFile } from "./gguf-reader.js";
import { ggmlTypes, gguf } from "./gguf-types.js";
import { writeGguf } from "./gguf-writer.js";
import { BYTE_VOCAB_SIZE, byteVocabTokens } from "./byte-vocab.js";
import { dequantize } from "./dequantize.js";
import { quantizeQ8_0 } from "./k-quants.js";
import { syntheticVocabTokens } from "./synthetic-vocab.js";
import { buildTinyModel, seededNormal, writeTinyModel } from "./tiny-model.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-gguf-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("GGUF write then read", () => {
  it("is the identity on metadata and F32 tensors (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.stringMatching(/^[a-z][a-z0-9_.]{0,15}$/),
          fc.oneof(fc.string(), fc.integer({ min: 0, max: 2 ** 31 })),
        ),
        fc.array(fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 40 }), {
          maxLength: 4,
        }),
        fc.constantFrom(32, 64),
        async (meta, tensorValues, alignment) => {
          const metadata = Object.fromEntries(
            Object.entries(meta).map(([k, v]) => [k, typeof v === "string" ? gguf.string(v) : gguf.u32(v)]),
          );
          const tensors = tensorValues.map((values, i) => ({
            name: `t${i}`,
            dims: [values.length],
            data: Float32Array.from(values),
          }));
          const path = join(dir, "prop.gguf");
          await writeGguf(path, { metadata, tensors, alignment });
          const file = await GgufFile.open(path);
          try {
            for (const [key, value] of Object.entries(metadata)) expect(file.metadata[key]).toEqual(value);
            for (const tensor of tensors) expect(await file.readTensor(tensor.name)).toEqual(tensor.data);
            expect(file.header.alignment).toBe(alignment);
          } finally {
            await file.close();
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it("keeps arrays of every item type whole, past the reader's 1 MiB buffer, and strings that start with a BOM", async () => {
    // A real tokenizer: hundreds of thousands of strings, some beginning with U+FEFF (which a default UTF-8 decoder
    // drops), some multi-byte; numbers of each width.
    const tokens = Array.from({ length: 150_000 }, (_, i) => (i % 1000 === 7 ? "\uFEFF" : "") + `tok${i}é东`);
    const metadata = {
      "tokenizer.ggml.tokens": gguf.array("string", ["\uFEFF", "\uFEFF\uFEFF", ...tokens]),
      "tokenizer.ggml.scores": gguf.array("f32", [0.5, -1.25, 3]),
      "tokenizer.ggml.token_type": gguf.array("i32", [1, -2, 6]),
      flags: gguf.array("bool", [true, false, true]),
      big: gguf.array("u64", [1n, 2n ** 40n]),
      small: gguf.array("u8", [0, 255]),
      "general.name": gguf.string("\uFEFFname"),
    };
    const path = join(dir, "arrays.gguf");
    await writeGguf(path, { metadata, tensors: [{ name: "t", dims: [2], data: Float32Array.of(1, 2) }] });
    const file = await GgufFile.open(path);
    try {
      for (const [key, value] of Object.entries(metadata)) expect(file.metadata[key], key).toEqual(value);
      expect(await file.readTensor("t")).toEqual(Float32Array.of(1, 2));
    } finally {
      await file.close();
    }
  });

  it("F16 round trip keeps values within half precision", async () => {
    const path = join(dir, "f16.gguf");
    const data = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * 3);
    await writeGguf(path, { metadata: {}, tensors: [{ name: "w", dims: [8, 8], data, type: "F16" }] });
    const file = await GgufFile.open(path);
    const back = await file.readTensor("w");
    await file.close();
    for (let i = 0; i < data.length; i++) {
      expect(back[i]).toBe(float16BitsToFloat32(float32ToFloat16Bits(data[i]!)));
      expect(Math.abs(back[i]! - data[i]!)).toBeLessThan(3e-3);
    }
  });

  it("float16 conversion handles subnormals, overflow and rounding", () => {
    expect(float16BitsToFloat32(float32ToFloat16Bits(1))).toBe(1);
    expect(float16BitsToFloat32(float32ToFloat16Bits(65504))).toBe(65504);
    expect(float16BitsToFloat32(float32ToFloat16Bits(1e6))).toBe(Number.POSITIVE_INFINITY);
    expect(float16BitsToFloat32(float32ToFloat16Bits(2 ** -24))).toBe(2 ** -24);
    expect(float16BitsToFloat32(float32ToFloat16Bits(1 + 2 ** -11))).toBe(1); // ties to even
  });
});

describe("tiny models", () => {
  it("llama.cpp loads what our writer writes, with the tensors and metadata we wrote", async () => {
    const path = join(dir, "tiny.gguf");
    const built = buildTinyModel({ seed: 7 });
    await writeTinyModel(path, { seed: 7 });
    const file = await GgufFile.open(path);
    expect(file.value("general.architecture")).toBe("llama");
    expect(file.value("llama.attention.head_count_kv")).toBe(2);
    expect(await file.readTensor("blk.1.ffn_down.weight")).toEqual(
      built.tensors.find((t) => t.name === "blk.1.ffn_down.weight")!.data,
    );
    await file.close();

    const llama = await getLlama({ gpu: false, build: "never" });
    const model = await llama.loadModel({ modelPath: path });
    try {
      expect(model.fileInfo.metadata.general.architecture).toBe("llama");
      const text = "Hello, world!\n\tbytes: é ✓";
      expect(model.detokenize(model.tokenize(text))).toBe(text);
      // SentencePiece adds a dummy leading space: "Hi" -> ▁ H i
      expect(model.tokenize("Hi").length).toBe(3);
    } finally {
      await model.dispose();
    }
  });
});

describe("Q8_0 and larger vocabularies", () => {
  it("Q8_0 blocks decode to within half a quantisation step, and zero blocks stay zero", async () => {
    const random = seededNormal(5);
    const data = Float32Array.from({ length: 32 * 6 }, (_, i) => (i < 32 ? 0 : random() * (1 + (i % 7))));
    const bytes = quantizeQ8_0(data);
    expect(bytes.length).toBe(6 * 34);
    const back = dequantize("Q8_0", bytes, data.length);
    for (let b = 0; b < 6; b++) {
      const block = data.subarray(b * 32, b * 32 + 32);
      const step = Math.max(...block.map(Math.abs)) / 127;
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        // The scale itself is rounded to F16, which adds up to ~0.1% of the value.
        expect(Math.abs(back[i]! - data[i]!)).toBeLessThanOrEqual(step / 2 + Math.abs(data[i]!) * 1e-3 + 1e-9);
      }
    }
    expect([...back.subarray(0, 32)].every((v) => v === 0)).toBe(true);
    // The largest value of a block is exactly ±127 steps.
    const view = new DataView(bytes.buffer);
    for (let b = 1; b < 6; b++) {
      const quants = Array.from({ length: 32 }, (_, j) => view.getInt8(b * 34 + 2 + j));
      expect(Math.max(...quants.map(Math.abs))).toBe(127);
    }
    expect(() => quantizeQ8_0(new Float32Array(33))).toThrow(/blocks/);
  });

  it("a synthetic vocabulary pads the byte vocabulary with reachable word tokens", () => {
    const { tokens } = syntheticVocabTokens(2000);
    expect(tokens).toHaveLength(2000);
    expect(new Set(tokens).size).toBe(2000);
    expect(tokens.slice(0, BYTE_VOCAB_SIZE)).toEqual(byteVocabTokens().tokens);
    const known = new Set(tokens);
    // Every added token's one-letter-shorter prefix is a token, so merges can build it.
    for (const token of tokens.slice(BYTE_VOCAB_SIZE)) expect(known.has(token.slice(0, -1))).toBe(true);
    expect(() => syntheticVocabTokens(100)).toThrow(/at least 354/);
  });

  it("llama.cpp loads a Q8_0 model with a 4,096-token vocabulary, tokenises into its words, and its logits follow the F32 model", async () => {
    const shape = {
      layers: 2,
      dim: 128,
      heads: 4,
      kvHeads: 2,
      ffn: 256,
      vocabSize: 4096,
      seed: 9,
      tiedEmbeddings: true,
    };
    const q8Path = join(dir, "q8.gguf");
    const f32Path = join(dir, "f32.gguf");
    await writeTinyModel(q8Path, { ...shape, dtype: "Q8_0" });
    await writeTinyModel(f32Path, { ...shape, dtype: "F32" });
    const file = await GgufFile.open(q8Path);
    expect(file.tensorInfo("blk.0.attn_q.weight")?.type).toBe(ggmlTypes.Q8_0);
    expect(file.value("general.file_type")).toBe(7);
    await file.close();

    const llama = await getLlama({ gpu: false, build: "never" });
    const logitsOf = async (path: string) => {
      const model = await llama.loadModel({ modelPath: path });
      try {
        expect(model.tokens.bos).toBe(1);
        const text = "we go to an ox";
        const tokens = model.tokenize(text);
        expect(model.detokenize(tokens)).toBe(text);
        // At 4,096 tokens every two-letter word is one token ("▁we", "▁go", ...): 5 tokens, not 14 characters.
        expect(tokens).toHaveLength(5);
        const context = await model.createContext({ contextSize: 64, threads: 1 });
        const results = await context
          .getSequence()
          .controlledEvaluate(
            [1 as Token, ...tokens].map((token) => [token, { generateNext: { logits: true } }] as const),
          );
        return results.map((result) => [...(result?.next?.logits?.values() ?? [])]);
      } finally {
        await model.dispose();
      }
    };
    const fromQ8 = await logitsOf(q8Path);
    const fromF32 = await logitsOf(f32Path);
    let worst = 0;
    let scale = 0;
    fromF32.forEach((row, i) => {
      expect(row).toHaveLength(4096);
      row.forEach((value, j) => {
        worst = Math.max(worst, Math.abs(value - fromQ8[i]![j]!));
        scale = Math.max(scale, Math.abs(value));
      });
    });
    expect(scale).toBeGreaterThan(0.1);
    expect(worst / scale).toBeLessThan(0.05);
  });
});
