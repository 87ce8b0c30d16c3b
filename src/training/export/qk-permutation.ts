/**
 * convert_hf_to_gguf.py permutes the rows of LLaMA q_proj/k_proj for llama.cpp's adjacent-pair RoPE:
 * w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2), so GGUF row h*hd + 2i + c holds HF row h*hd + c*hd/2 + i.
 * A LoRA's lora_B (out, r) rows follow the same map; lora_A (r, in) is unaffected.
 */

/** GGUF row order -> HF row order of a (rows, cols) row-major matrix with rows = heads * headDim. */
export function ggufToHfRows(data: Float32Array, heads: number, cols: number): Float32Array {
  return permuteRows(data, heads, cols, true);
}

/** HF row order -> GGUF row order (what convert_hf_to_gguf.py does). */
export function hfToGgufRows(data: Float32Array, heads: number, cols: number): Float32Array {
  return permuteRows(data, heads, cols, false);
}

function permuteRows(data: Float32Array, heads: number, cols: number, toHf: boolean): Float32Array {
  const rows = data.length / cols;
  const hd = rows / heads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new Error(`cannot permute ${rows} rows over ${heads} heads`);
  const out = new Float32Array(data.length);
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let c = 0; c < 2; c++) {
        const gguf = h * hd + 2 * i + c;
        const hf = h * hd + c * half + i;
        const [from, to] = toHf ? [gguf, hf] : [hf, gguf];
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}
