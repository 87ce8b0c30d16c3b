/**
 * Quantisation of F32 values to ggml's Q8_0 blocks, as ggml's reference quantize_row_q8_0 does it: per 32 values,
 * d = max|x| / 127 stored as F16, then q = round(x / d) as int8 (all zero when the block is zero). Used to write
 * models with a real model's storage type and cost (`selfalign model tiny --dtype Q8_0`).
 */
import { float32ToFloat16Bits } from "./float16.js";

const blockElements = 32;
const blockBytes = 34;

/** Encode `values` (a whole number of 32-value blocks) as Q8_0 blocks. */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % blockElements !== 0)
    throw new Error(`Q8_0 needs a whole number of ${blockElements}-value blocks, got ${values.length} values`);
  const blocks = values.length / blockElements;
  const out = new Uint8Array(blocks * blockBytes);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const first = b * blockElements;
    let max = 0;
    for (let j = 0; j < blockElements; j++) max = Math.max(max, Math.abs(values[first + j] as number));
    const d = Math.fround(max / 127);
    const inverse = d !== 0 ? Math.fround(1 / d) : 0;
    const at = b * blockBytes;
    view.setUint16(at, float32ToFloat16Bits(d), true);
    for (let j = 0; j < blockElements; j++) {
      const x = Math.fround((values[first + j] as number) * inverse);
      // C's roundf: halves away from zero (Math.round rounds -2.5 to -2).
      view.setInt8(at + 2 + j, Math.sign(x) * Math.round(Math.abs(x)));
    }
  }
  return out;
}
