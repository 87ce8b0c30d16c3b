/**
 * What each architecture the tiny-model writer produces adds to the LLaMA block, in the tensor names and metadata
 * keys llama.cpp reads (src/models/<arch>.cpp): qwen2's q/k/v biases, qwen3's per-head q/k norms, gemma2's post-norms
 * and soft-caps, gemma3's q/k norms and post-norms, and their sliding windows. Gemma's norms hold 1 + w, as llama.cpp's
 * converter stores them, so random norms around 1 are what a converted model looks like. phi3 stores q, k and v as one
 * attn_qkv and gate and up as one ffn_up (gate first), as its converter writes them.
 */
import type { GgufTensorInput } from "./gguf-writer.js";
import { type GgufValue, gguf } from "./gguf-types.js";

/** Architectures the tiny-model writer can produce. */
export const tinyArchitectures = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"] as const;
export type TinyArchitecture = (typeof tinyArchitectures)[number];

/** Hyper-parameters only some architectures have (written only where the architecture reads them). */
export interface TinyArchitectureExtras {
  /** gemma2/gemma3: attention.sliding_window (gemma2's layers 0, 2, ...; gemma3's 5 of every 6). */
  slidingWindow?: number;
  /** gemma2/gemma3: attention.sliding_window_pattern, the period n (every n-th layer attends fully; llama.cpp's
   * defaults are 2 for gemma2 and 6 for gemma3). */
  slidingWindowPattern?: number;
  /** gemma2: attn_logit_softcapping (llama.cpp's default when absent: 50). */
  attentionSoftcap?: number;
  /** gemma2/gemma3: final_logit_softcapping (gemma2's default when absent: 30; gemma3: none). */
  finalSoftcap?: number;
  /** gemma3: rope.freq_base_swa, the RoPE base of the sliding-window layers (default 10000). */
  ropeFreqBaseSwa?: number;
}

export interface TinyLayerShape {
  prefix: string;
  dim: number;
  headDim: number;
  kvDim: number;
  qDim: number;
  norm: (n: number) => Float32Array;
  random: (n: number, std: number) => Float32Array;
}

/** Extra tensors of one block (beside the LLaMA ones). */
export function architectureLayerTensors(architecture: TinyArchitecture, shape: TinyLayerShape): GgufTensorInput[] {
  const { prefix: p, dim, headDim, kvDim, qDim, norm, random } = shape;
  const tensors: GgufTensorInput[] = [];
  if (architecture === "qwen2") {
    tensors.push({ name: `${p}.attn_q.bias`, dims: [qDim], data: random(qDim, 0.1) });
    tensors.push({ name: `${p}.attn_k.bias`, dims: [kvDim], data: random(kvDim, 0.1) });
    tensors.push({ name: `${p}.attn_v.bias`, dims: [kvDim], data: random(kvDim, 0.1) });
  }
  if (architecture === "qwen3" || architecture === "gemma3") {
    tensors.push({ name: `${p}.attn_q_norm.weight`, dims: [headDim], data: norm(headDim) });
    tensors.push({ name: `${p}.attn_k_norm.weight`, dims: [headDim], data: norm(headDim) });
  }
  if (architecture === "gemma2" || architecture === "gemma3") {
    tensors.push({ name: `${p}.post_attention_norm.weight`, dims: [dim], data: norm(dim) });
    tensors.push({ name: `${p}.post_ffw_norm.weight`, dims: [dim], data: norm(dim) });
  }
  return tensors;
}

/** gemma2 always reads its output head from the token embeddings. */
export function alwaysTied(architecture: TinyArchitecture): boolean {
  return architecture === "gemma2";
}

/** Metadata keys of the architecture beyond the LLaMA ones. */
export function architectureMetadata(
  architecture: TinyArchitecture,
  headDim: number,
  extras: TinyArchitectureExtras,
): Record<string, GgufValue> {
  const a = architecture;
  const out: Record<string, GgufValue> = {};
  if (a === "qwen3" || a === "gemma2" || a === "gemma3") {
    out[`${a}.attention.key_length`] = gguf.u32(headDim);
    out[`${a}.attention.value_length`] = gguf.u32(headDim);
  }
  if ((a === "gemma2" || a === "gemma3") && extras.slidingWindow !== undefined)
    out[`${a}.attention.sliding_window`] = gguf.u32(extras.slidingWindow);
  if ((a === "gemma2" || a === "gemma3") && extras.slidingWindowPattern !== undefined)
    out[`${a}.attention.sliding_window_pattern`] = gguf.u32(extras.slidingWindowPattern);
  if (a === "gemma2" && extras.attentionSoftcap !== undefined)
    out[`${a}.attn_logit_softcapping`] = gguf.f32(extras.attentionSoftcap);
  if ((a === "gemma2" || a === "gemma3") && extras.finalSoftcap !== undefined)
    out[`${a}.final_logit_softcapping`] = gguf.f32(extras.finalSoftcap);
  if (a === "gemma3" && extras.ropeFreqBaseSwa !== undefined)
    out[`${a}.rope.freq_base_swa`] = gguf.f32(extras.ropeFreqBaseSwa);
  return out;
}

/** The architecture's tensors as its converter stores them: phi3 fuses q/k/v and gate/up (row blocks, in order). */
export function fuseTensors(architecture: TinyArchitecture, tensors: GgufTensorInput[]): GgufTensorInput[] {
  if (architecture !== "phi3") return tensors;
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const fused = new Set<string>();
  const concat = (name: string, parts: string[]): GgufTensorInput => {
    const inputs = parts.map((part) => byName.get(part)!);
    for (const part of parts) fused.add(part);
    const data = new Float32Array(inputs.reduce((sum, t) => sum + t.data.length, 0));
    let at = 0;
    for (const t of inputs) {
      data.set(t.data, at);
      at += t.data.length;
    }
    const rows = inputs.reduce((sum, t) => sum + t.dims[1]!, 0);
    return { name, dims: [inputs[0]!.dims[0]!, rows], data, type: inputs[0]!.type ?? "F32" };
  };
  const out: GgufTensorInput[] = [];
  for (const tensor of tensors) {
    const layer = /^blk\.(\d+)\.(attn_q|ffn_gate)\.weight$/.exec(tensor.name);
    if (layer?.[2] === "attn_q") {
      const p = `blk.${layer[1]}`;
      out.push(concat(`${p}.attn_qkv.weight`, [`${p}.attn_q.weight`, `${p}.attn_k.weight`, `${p}.attn_v.weight`]));
    } else if (layer?.[2] === "ffn_gate") {
      const p = `blk.${layer[1]}`;
      out.push(concat(`${p}.ffn_up.weight`, [`${p}.ffn_gate.weight`, `${p}.ffn_up.weight`]));
    } else if (!fused.has(tensor.name) && !/\.(attn_k|attn_v|ffn_up)\.weight$/.test(tensor.name)) {
      out.push(tensor);
    }
  }
  return out;
}
