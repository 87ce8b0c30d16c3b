/**
 * Dequantisation of ggml tensor data to F32: F32, F16, BF16, the 32-element blocks Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1
 * (llama.cpp falls back to these in k-quant files for rows that are not a multiple of 256), and the k-quant
 * super-blocks Q4_K, Q5_K and Q6_K (what Q4_K_M / Q5_K_M / Q6_K GGUF files hold), following the block layouts of
 * ggml-common.h and the arithmetic of ggml-quants.c.
 */
import { bfloat16BitsToFloat32, float16BitsToFloat32, float16Table } from "./float16.js";
import type { GgmlTypeName } from "./gguf-types.js";

/** Elements per block and bytes per block of each type. */
export const ggmlBlockLayout: Record<GgmlTypeName, { elements: number; bytes: number }> = {
  F32: { elements: 1, bytes: 4 },
  F16: { elements: 1, bytes: 2 },
  BF16: { elements: 1, bytes: 2 },
  Q8_0: { elements: 32, bytes: 34 },
  Q4_0: { elements: 32, bytes: 18 },
  Q4_1: { elements: 32, bytes: 20 },
  Q5_0: { elements: 32, bytes: 22 },
  Q5_1: { elements: 32, bytes: 24 },
  Q4_K: { elements: 256, bytes: 144 },
  Q5_K: { elements: 256, bytes: 176 },
  Q6_K: { elements: 256, bytes: 210 },
};

/** Bytes of `count` elements of `type`; undefined when `count` is not a whole number of blocks. */
export function ggmlByteLength(type: GgmlTypeName, count: number): number | undefined {
  const { elements, bytes } = ggmlBlockLayout[type];
  return count % elements === 0 ? (count / elements) * bytes : undefined;
}

/**
 * The 6-bit scale and min of sub-block `j` (0-7) of a Q4_K/Q5_K super-block, packed in 12 bytes at `at`: the first
 * four pairs in the low 6 bits of bytes 0-7, the last four in the nibbles of bytes 8-11 plus the top 2 bits of 0-7.
 */
function scaleMin(bytes: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [bytes[at + j]! & 63, bytes[at + j + 4]! & 63];
  const packed = bytes[at + j + 4]!;
  return [(packed & 0xf) | ((bytes[at + j - 4]! >> 6) << 4), (packed >> 4) | ((bytes[at + j]! >> 6) << 4)];
}

/** Decode `count` elements of `type` from `bytes` (which holds exactly their blocks). */
export function dequantize(type: GgmlTypeName, bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const half = (at: number) => float16BitsToFloat32(view.getUint16(at, true));
  const blocks = count / ggmlBlockLayout[type].elements;
  switch (type) {
    case "F32":
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case "F16": {
      const lookup = float16Table();
      for (let i = 0; i < count; i++) out[i] = lookup[view.getUint16(i * 2, true)]!;
      break;
    }
    case "BF16":
      for (let i = 0; i < count; i++) out[i] = bfloat16BitsToFloat32(view.getUint16(i * 2, true));
      break;
    case "Q8_0":
      // d (f16), then 32 int8 quants: x = d * q.
      for (let b = 0; b < blocks; b++) {
        const at = b * 34;
        const d = half(at);
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(at + 2 + j);
      }
      break;
    case "Q4_0":
    case "Q4_1":
    case "Q5_0":
    case "Q5_1": {
      // d (f16), [Q4_1/Q5_1: min m (f16)], [Q5_0/Q5_1: 32 fifth bits, u32], then 16 bytes: element j in the low nibble
      // of byte j, element j + 16 in its high nibble (fifth bits j and j + 16). Q4_0: x = d(q - 8); Q5_0: d(q - 16);
      // with a min: x = d*q + m.
      const withMin = type === "Q4_1" || type === "Q5_1";
      const five = type === "Q5_0" || type === "Q5_1";
      const size = ggmlBlockLayout[type].bytes;
      const offset = withMin ? 0 : five ? 16 : 8;
      const quantsAt = 2 + (withMin ? 2 : 0) + (five ? 4 : 0);
      for (let b = 0; b < blocks; b++) {
        const at = b * size;
        const d = half(at);
        const m = withMin ? half(at + 2) : 0;
        const high = five ? view.getUint32(at + (withMin ? 4 : 2), true) : 0;
        for (let j = 0; j < 16; j++) {
          const q = bytes[at + quantsAt + j]!;
          const q0 = (q & 0xf) | (five ? ((high >>> j) & 1) << 4 : 0);
          const q1 = (q >> 4) | (five ? ((high >>> (j + 16)) & 1) << 4 : 0);
          out[b * 32 + j] = d * (q0 - offset) + m;
          out[b * 32 + j + 16] = d * (q1 - offset) + m;
        }
      }
      break;
    }
    case "Q4_K":
    case "Q5_K": {
      // d, dmin (f16), 12 bytes of 6-bit scales and mins, [Q5_K: 32 bytes of fifth bits], 128 bytes of nibbles.
      // Each 64 elements: two sub-blocks of 32 from the low and high nibbles of 32 bytes; x = d*sc*q - dmin*m.
      const five = type === "Q5_K";
      const size = five ? 176 : 144;
      for (let b = 0; b < blocks; b++) {
        const at = b * size;
        const d = half(at);
        const dmin = half(at + 2);
        const high = at + 16;
        let quants = five ? at + 48 : at + 16;
        let y = b * 256;
        for (let pair = 0; pair < 4; pair++) {
          const [sc1, m1] = scaleMin(bytes, at + 4, 2 * pair);
          const [sc2, m2] = scaleMin(bytes, at + 4, 2 * pair + 1);
          const lowBit = 1 << (2 * pair);
          for (let l = 0; l < 32; l++) {
            const fifth = five && bytes[high + l]! & lowBit ? 16 : 0;
            out[y + l] = d * sc1 * ((bytes[quants + l]! & 0xf) + fifth) - dmin * m1;
          }
          for (let l = 0; l < 32; l++) {
            const fifth = five && bytes[high + l]! & (lowBit << 1) ? 16 : 0;
            out[y + 32 + l] = d * sc2 * ((bytes[quants + l]! >> 4) + fifth) - dmin * m2;
          }
          quants += 32;
          y += 64;
        }
      }
      break;
    }
    case "Q6_K":
      // 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales (one per 16 elements), d (f16).
      // x = d * scale * (q - 32), q 6 bits.
      for (let b = 0; b < blocks; b++) {
        const at = b * 210;
        const d = half(at + 208);
        for (let half128 = 0; half128 < 2; half128++) {
          const ql = at + 64 * half128;
          const qh = at + 128 + 32 * half128;
          const sc = at + 192 + 8 * half128;
          const y = b * 256 + 128 * half128;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const h = bytes[qh + l]!;
            const q1 = ((bytes[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
            const q2 = ((bytes[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((bytes[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((bytes[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
            out[y + l] = d * view.getInt8(sc + is) * q1;
            out[y + l + 32] = d * view.getInt8(sc + is + 2) * q2;
            out[y + l + 64] = d * view.getInt8(sc + is + 4) * q3;
            out[y + l + 96] = d * view.getInt8(sc + is + 6) * q4;
          }
        }
      }
      break;
  }
  return out;
}
