/**
 * Quantisation of F32 rows into ggml's k-quant super-blocks (Q4_K, Q5_K, Q6_K) and Q8_0, in the block layouts of
 * ggml-common.h that dequantize.ts reads, and the tensor types llama.cpp's `llama-quantize` picks for Q4_K_M, Q5_K_M
 * and Q8_0 files (src/llama-quant.cpp). Scales come from each sub-block's range (min/max), not from llama.cpp's
 * iterative search, so a file has the storage types and layout of llama.cpp's but a little more rounding error: what
 * tests and rehearsals need, a base with a real model's quantisation, written here.
 */
import { float16BitsToFloat32, float32ToFloat16Bits } from "./float16.js";
import type { GgmlTypeName } from "./gguf-types.js";

/** The value a half-precision scale will hold. */
function half(value: number): number {
  return float16BitsToFloat32(float32ToFloat16Bits(value));
}

function putHalf(out: Uint8Array, at: number, value: number): void {
  const bits = float32ToFloat16Bits(value);
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
}

/** C's roundf: halves away from zero. */
function round(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

const clamp = (x: number, low: number, high: number) => Math.min(high, Math.max(low, x));

/** Q8_0: per 32 values, d = max|x| / 127 (F16) and q = round(x / d), as ggml's quantize_row_q8_0_ref. */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % 32 !== 0)
    throw new Error(`Q8_0 needs a whole number of 32-value blocks, got ${values.length} values`);
  const blocks = values.length / 32;
  const out = new Uint8Array(blocks * 34);
  for (let b = 0; b < blocks; b++) {
    let max = 0;
    for (let j = 0; j < 32; j++) max = Math.max(max, Math.abs(values[b * 32 + j]!));
    const d = Math.fround(max / 127);
    const inverse = d !== 0 ? Math.fround(1 / d) : 0;
    putHalf(out, b * 34, d);
    for (let j = 0; j < 32; j++) {
      const q = round(Math.fround(values[b * 32 + j]! * inverse));
      out[b * 34 + 2 + j] = q & 0xff;
    }
  }
  return out;
}

/**
 * Q4_K (`bits` 4) or Q5_K (5): 8 sub-blocks of 32 per 256, x = d·sc·q - dmin·m with 6-bit sc and m per sub-block.
 */
function quantizeAffineK(values: Float32Array, bits: 4 | 5): Uint8Array {
  const size = bits === 4 ? 144 : 176;
  const levels = (1 << bits) - 1;
  const blocks = values.length / 256;
  const out = new Uint8Array(blocks * size);
  for (let b = 0; b < blocks; b++) {
    const x = values.subarray(b * 256, (b + 1) * 256);
    const at = b * size;
    const scales = new Float64Array(8);
    const mins = new Float64Array(8);
    for (let j = 0; j < 8; j++) {
      let low = 0;
      let high = Number.NEGATIVE_INFINITY;
      for (let l = 0; l < 32; l++) {
        low = Math.min(low, x[32 * j + l]!);
        high = Math.max(high, x[32 * j + l]!);
      }
      scales[j] = Math.max(0, high - low) / levels;
      mins[j] = -low;
    }
    const d = half(Math.max(...scales) / 63);
    const dmin = half(Math.max(...mins) / 63);
    putHalf(out, at, d);
    putHalf(out, at + 2, dmin);
    const sc = Array.from(scales, (s) => (d > 0 ? clamp(round(s / d), 0, 63) : 0));
    const m = Array.from(mins, (v) => (dmin > 0 ? clamp(round(v / dmin), 0, 63) : 0));
    // 12 bytes of scales and mins: sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); 4-7 in
    // the nibbles of bytes 8-11 with their top 2 bits in the top bits of bytes 0-7.
    const packed = at + 4;
    for (let j = 0; j < 4; j++) {
      out[packed + j] = sc[j]! | ((sc[j + 4]! >> 4) << 6);
      out[packed + j + 4] = m[j]! | ((m[j + 4]! >> 4) << 6);
      out[packed + j + 8] = (sc[j + 4]! & 0xf) | ((m[j + 4]! & 0xf) << 4);
    }
    const q = new Uint8Array(256);
    for (let j = 0; j < 8; j++) {
      const step = d * sc[j]!;
      const offset = dmin * m[j]!;
      for (let l = 0; l < 32; l++)
        q[32 * j + l] = step > 0 ? clamp(round((x[32 * j + l]! + offset) / step), 0, levels) : 0;
    }
    const high = at + 16;
    const quants = bits === 5 ? at + 48 : at + 16;
    for (let pair = 0; pair < 4; pair++) {
      for (let l = 0; l < 32; l++) {
        const first = q[64 * pair + l]!;
        const second = q[64 * pair + 32 + l]!;
        out[quants + 32 * pair + l] = (first & 0xf) | ((second & 0xf) << 4);
        if (bits === 5)
          out[high + l] = out[high + l]! | ((first >> 4) << (2 * pair)) | ((second >> 4) << (2 * pair + 1));
      }
    }
  }
  return out;
}

/** Q6_K: 16 sub-blocks of 16 per 256, x = d·sc·(q - 32) with an int8 sc per sub-block and 6-bit q. */
function quantizeQ6K(values: Float32Array): Uint8Array {
  const blocks = values.length / 256;
  const out = new Uint8Array(blocks * 210);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const x = values.subarray(b * 256, (b + 1) * 256);
    const at = b * 210;
    const scales = new Float64Array(16);
    for (let k = 0; k < 16; k++) {
      let max = 0;
      for (let l = 0; l < 16; l++) max = Math.max(max, Math.abs(x[16 * k + l]!));
      scales[k] = max / 31;
    }
    const d = half(Math.max(...scales) / 127);
    putHalf(out, at + 208, d);
    const q = new Uint8Array(256);
    for (let k = 0; k < 16; k++) {
      const sc = d > 0 ? clamp(round(scales[k]! / d), -128, 127) : 0;
      // Sub-block k of half h = k >> 3 has its scale at byte 192 + 8h + (k & 7).
      view.setInt8(at + 192 + k, sc);
      const step = d * sc;
      for (let l = 0; l < 16; l++) q[16 * k + l] = step !== 0 ? clamp(round(x[16 * k + l]! / step), -32, 31) + 32 : 32;
    }
    for (let h = 0; h < 2; h++) {
      const ql = at + 64 * h;
      const qh = at + 128 + 32 * h;
      const y = 128 * h;
      for (let l = 0; l < 32; l++) {
        const q1 = q[y + l]!;
        const q2 = q[y + l + 32]!;
        const q3 = q[y + l + 64]!;
        const q4 = q[y + l + 96]!;
        out[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        out[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
        out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
  return out;
}

/** The types this module writes. */
export const quantizedTypes = ["Q8_0", "Q4_K", "Q5_K", "Q6_K"] as const satisfies readonly GgmlTypeName[];
export type QuantizedType = (typeof quantizedTypes)[number];

/** Encode `values` (whole blocks: 32 for Q8_0, 256 for the k-quants) as `type`. */
export function quantize(type: QuantizedType, values: Float32Array): Uint8Array {
  const block = type === "Q8_0" ? 32 : 256;
  if (values.length % block !== 0)
    throw new Error(`${type} needs a whole number of ${block}-value blocks, got ${values.length} values`);
  switch (type) {
    case "Q8_0":
      return quantizeQ8_0(values);
    case "Q4_K":
      return quantizeAffineK(values, 4);
    case "Q5_K":
      return quantizeAffineK(values, 5);
    case "Q6_K":
      return quantizeQ6K(values);
  }
}

/** The file types of llama-quantize that a model here can be written in. */
export const quantizationRecipes = ["Q4_K_M", "Q5_K_M", "Q8_0"] as const;
export type QuantizationRecipe = (typeof quantizationRecipes)[number];

/** llama_ftype of each recipe (general.file_type). */
export const recipeFileTypes: Record<QuantizationRecipe, number> = { Q8_0: 7, Q4_K_M: 15, Q5_K_M: 17 };

/** llama-quant.cpp's use_more_bits: the first and last eighth of the layers and every third one between. */
function useMoreBits(layer: number, layers: number): boolean {
  return (
    layer < Math.floor(layers / 8) ||
    layer >= Math.floor((7 * layers) / 8) ||
    (layer - Math.floor(layers / 8)) % 3 === 2
  );
}

/**
 * The storage type llama-quantize gives a 2-D weight under `recipe`: the recipe's base type, and in Q4_K_M / Q5_K_M
 * Q6_K for the output head (or the embeddings, when tied) and for attn_v and ffn_down of the layers use_more_bits
 * picks. (llama-quantize falls back to Q5_0/Q5_1/Q8_0 for rows that are not whole 256-value super-blocks; the writer
 * here refuses those shapes instead.)
 */
export function recipeType(recipe: QuantizationRecipe, name: string, layers: number, tied: boolean): QuantizedType {
  if (recipe === "Q8_0") return "Q8_0";
  const layer = Number(/^blk\.(\d+)\./.exec(name)?.[1] ?? -1);
  if (name === "output.weight" || (tied && name === "token_embd.weight")) return "Q6_K";
  if (/\.(attn_v|ffn_down)\.weight$/.test(name) && useMoreBits(layer, layers)) return "Q6_K";
  return recipe === "Q4_K_M" ? "Q4_K" : "Q5_K";
}
