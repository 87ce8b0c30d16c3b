import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededNormal } from "../src/gguf/index.js";
import { createLora } from "../src/training/embedded/lora.js";
import type { LlamaConfig } from "../src/training/embedded/model-config.js";
import { ropeApply, ropeTable } from "../src/training/embedded/ops.js";
import { readPeftAdapter, writePeftAdapter } from "../src/training/export/peft-adapter.js";
import { ggufToHfRows, hfToGgufRows } from "../src/training/export/qk-permutation.js";
import { decodeSafetensors, encodeSafetensors } from "../src/training/export/safetensors.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-export-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const config: LlamaConfig = {
  architecture: "llama",
  vocabSize: 354,
  contextLength: 64,
  dim: 32,
  layers: 2,
  ffn: 48,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  ropeDims: 8,
  ropeFreqBase: 10000,
  ropeFreqScale: 1,
  ropeMode: "normal",
  rmsEpsilon: 1e-5,
  tiedEmbeddings: false,
  qkvBias: false,
};

describe("safetensors", () => {
  it("header and offsets parse back, 8-byte aligned, data identical", () => {
    const a = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const b = Float32Array.from([-1.5, 7]);
    const bytes = encodeSafetensors(
      [
        { name: "a", shape: [2, 3], data: a },
        { name: "b", shape: [2, 1], data: b },
      ],
      { format: "pt" },
    );
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect((8 + headerLength) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
    expect(header).toEqual({
      __metadata__: { format: "pt" },
      a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: "F32", shape: [2, 1], data_offsets: [24, 32] },
    });
    expect(bytes.length).toBe(8 + headerLength + 32);
    expect(bytes.readFloatLE(8 + headerLength + 24)).toBe(-1.5);
    const decoded = decodeSafetensors(bytes);
    expect(Array.from(decoded.tensors.get("a")!.data)).toEqual(Array.from(a));
    expect(decoded.tensors.get("b")!.shape).toEqual([2, 1]);
  });
});

describe("HF <-> GGUF q/k permutation", () => {
  it("round trips (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        (heads, halfHd, cols) => {
          const rows = heads * halfHd * 2;
          const data = Float32Array.from({ length: rows * cols }, (_, i) => i);
          const hf = ggufToHfRows(data, heads, cols);
          expect(Array.from(hfToGgufRows(hf, heads, cols))).toEqual(Array.from(data));
          return halfHd === 1 || hf.some((v, i) => v !== data[i]);
        },
      ),
    );
  });

  it("GGUF adjacent-pair RoPE on GGUF rows equals HF rotate_half RoPE on HF rows", () => {
    const heads = 2,
      hd = 8;
    const normal = seededNormal(3);
    const x = Float32Array.from({ length: heads * hd }, () => normal());
    const table = ropeTable(Int32Array.from([5]), hd, 10000, 1);
    const ggufRoped = Float64Array.from(x);
    ropeApply(ggufRoped, 1, heads, hd, "normal", table, false);
    const hfRoped = Float64Array.from(ggufToHfRows(x, heads, 1));
    ropeApply(hfRoped, 1, heads, hd, "neox", table, false);
    const back = ggufToHfRows(Float32Array.from(ggufRoped), heads, 1);
    for (let i = 0; i < back.length; i++) expect(Math.abs(back[i]! - hfRoped[i]!)).toBeLessThan(1e-6);
  });
});

describe("PEFT adapter", () => {
  it("names, shapes and the q/k lora_B permutation", async () => {
    const lora = createLora(config, {
      rank: 2,
      alpha: 4,
      targets: ["q", "k", "v"],
      seed: 1,
      alloc: (n) => new Float32Array(n),
    });
    const normal = seededNormal(8);
    for (const m of lora.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal();
    const out = join(dir, "peft");
    await writePeftAdapter(out, lora, config, { baseModelName: "base.gguf", dropout: 0.05 });
    const { tensors } = decodeSafetensors(await readFile(join(out, "adapter_model.safetensors")));
    expect([...tensors.keys()].slice(0, 2)).toEqual([
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
    ]);
    const kB = tensors.get("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight")!;
    expect(kB.shape).toEqual([16, 2]);
    const k1 = lora.modules.find((m) => m.layer === 1 && m.target === "k")!;
    // HF row 1 (head 0, c=0, i=1) is GGUF row 2; HF row 4 (head 0, c=1, i=0) is GGUF row 1.
    expect(kB.data[1 * 2]).toBe(k1.b[2 * 2]);
    expect(kB.data[4 * 2 + 1]).toBe(k1.b[1 * 2 + 1]);
    const vB = tensors.get("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight")!;
    const v1 = lora.modules.find((m) => m.layer === 1 && m.target === "v")!;
    expect(Array.from(vB.data)).toEqual(Array.from(v1.b));
    const back = await readPeftAdapter(out, config);
    expect(back.targets).toEqual(["q", "k", "v"]);
    back.modules.forEach((m, i) => {
      expect(Array.from(m.b)).toEqual(Array.from(lora.modules[i]!.b));
    });
    const qwen = await readPeftAdapter(out, { ...config, architecture: "qwen2", ropeMode: "neox" });
    // NeoX-RoPE models (qwen2) are converted without the permutation: lora_B is read as stored.
    const k0B = tensors.get("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight")!;
    expect(qwen.modules[1]!.target).toBe("k");
    expect(Array.from(qwen.modules[1]!.b)).toEqual(Array.from(k0B.data));
  });
});

describe("PEFT adapters in half precision", () => {
  /** Reference rounding, written from the format's definition: keep the top 16 bits, ties to even. */
  function bf16Reference(value: number): number {
    const bits = new Uint32Array(Float32Array.of(value).buffer)[0]!;
    const lower = bits & 0xffff;
    let upper = bits >>> 16;
    if (lower > 0x8000 || (lower === 0x8000 && (upper & 1) === 1)) upper += 1;
    return new Float32Array(Uint32Array.of(upper << 16).buffer)[0]!;
  }

  it("round-trips F16 and BF16 adapters through the PEFT reader, q/k permutation included", async () => {
    const lora = createLora(config, {
      rank: 2,
      alpha: 4,
      targets: ["q", "k", "v", "o"],
      seed: 3,
      alloc: (n) => new Float32Array(n),
    });
    const normal = seededNormal(11);
    for (const m of lora.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal() * 0.02;
    for (const dtype of ["F16", "BF16"] as const) {
      const out = join(dir, `peft-${dtype}`);
      await writePeftAdapter(out, lora, config, { baseModelName: "base", dropout: 0, dtype });
      const bytes = await readFile(join(out, "adapter_model.safetensors"));
      const headerLength = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
      expect(header["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].dtype).toBe(dtype);
      const back = await readPeftAdapter(out, config);
      expect(back.targets).toEqual(["q", "k", "v", "o"]);
      back.modules.forEach((m, i) => {
        const original = lora.modules[i]!;
        for (let j = 0; j < original.b.length; j++) {
          const value = original.b[j]!;
          if (dtype === "BF16") expect(m.b[j]).toBe(bf16Reference(value));
          else expect(m.b[j]).toBeCloseTo(value, 4);
          // Half precision keeps at least 7 significant bits.
          expect(Math.abs(m.b[j]! - value)).toBeLessThanOrEqual(Math.abs(value) * 2 ** -8 + 1e-7);
        }
        for (let j = 0; j < original.a.length; j++)
          expect(Math.abs(m.a[j]! - original.a[j]!)).toBeLessThanOrEqual(Math.abs(original.a[j]!) * 2 ** -8 + 1e-7);
      });
    }
  });

  it("rounds BF16 to nearest even, as torch does", () => {
    // 1 + 2^-8 is halfway between two bf16 values: ties to the even one (1); 1 + 3·2^-8 ties up to 1 + 2^-6.
    const values = Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, 1e-3]);
    const bytes = encodeSafetensors([{ name: "t", shape: [4], data: values, dtype: "BF16" }]);
    const decoded = decodeSafetensors(bytes).tensors.get("t")!.data;
    expect(Array.from(decoded)).toEqual([1, 1 + 2 ** -6, -2.5, bf16Reference(1e-3)]);
  });
});
