/**
 * Hyper-parameters of a LLaMA-family GGUF, read from its metadata the way llama.cpp reads them (src/models/*.cpp of
 * the llama.cpp that node-llama-cpp ships). Supported: llama (and Mistral/SmolLM-style models converted as llama),
 * mistral, qwen2 (NeoX RoPE, q/k/v biases), qwen3 (RMS norms on q and k per head), gemma2 (embeddings scaled by
 * sqrt(dim), norms after attention and MLP, soft-capped attention and final logits, GeGLU, sliding-window attention
 * on alternate layers) and gemma3 (gemma2's block with q/k norms instead of attention soft-capping, 5 of 6 layers
 * sliding-window with their own RoPE base). Gemma's RMSNorm multiplies by (1 + w); llama.cpp's converter stores
 * 1 + w in the GGUF, so every norm here multiplies by the stored weight. phi3 stores q/k/v as one attn_qkv and
 * gate/up as one ffn_up (gate first): they are split at load, and the adapter is fused again at export.
 */
import { ConfigError } from "../../errors/index.js";
import type { GgufFile } from "../../gguf/index.js";

export const supportedArchitectures = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"] as const;
export type SupportedArchitecture = (typeof supportedArchitectures)[number];

/** RoPE pairing: `normal` rotates adjacent pairs (x[2i], x[2i+1]); `neox` rotates (x[i], x[i + nRot/2]). */
export type RopeMode = "normal" | "neox";

export interface LlamaConfig {
  architecture: SupportedArchitecture;
  vocabSize: number;
  contextLength: number;
  dim: number;
  layers: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Rotated dimensions per head (rope.dimension_count, default headDim). */
  ropeDims: number;
  ropeFreqBase: number;
  /** 1 / linear rope scaling factor (1 when not scaled). */
  ropeFreqScale: number;
  ropeMode: RopeMode;
  rmsEpsilon: number;
  /** Output head shares the token embeddings. */
  tiedEmbeddings: boolean;
  /** q/k/v projections carry biases (qwen2). */
  qkvBias: boolean;
  /** RMS norms over each head of q and k before RoPE (qwen3, gemma3). */
  qkNorm: boolean;
  /** Norms on the attention and MLP outputs before each residual add (gemma2/3). */
  postNorms: boolean;
  /** The token embeddings are multiplied by this (gemma: sqrt(dim)). */
  embeddingScale: number;
  /** Scale of q·k in attention (1/sqrt(headDim), or gemma's query_pre_attn_scalar). */
  attentionScale: number;
  /** Attention scores become cap·tanh(s / cap) before the softmax (gemma2); undefined: none. */
  attentionSoftcap?: number;
  /** Logits become cap·tanh(z / cap) (gemma2, some gemma3); undefined: none. */
  finalSoftcap?: number;
  /** q, k and v are stored as one attn_qkv tensor (rows q, then k, then v), as phi3 converts them. */
  fusedQkv: boolean;
  /** gate and up are stored as one ffn_up tensor of 2 × ffn rows (gate first), as phi3 converts them. */
  fusedGateUp: boolean;
  /** Gate activation of the MLP: SwiGLU (silu) or GeGLU with tanh-approximated GELU (gemma). */
  activation: "silu" | "gelu";
  /** Sliding-window attention: the window (a query sees the `window` latest positions, itself included) and the
   * layers that use it; those layers take their own RoPE base and scale. Undefined: every layer attends fully. */
  slidingWindow?: { window: number; layers: boolean[]; ropeFreqBase: number; ropeFreqScale: number };
}

/** Layers that use the sliding window: `<arch>.attention.sliding_window_pattern` (per-layer flags or a period n,
 * where every n-th layer is global), else the architecture's period (llama.cpp's set_swa_pattern). */
function slidingLayers(file: GgufFile, arch: string, layers: number, period: number): boolean[] {
  const entry = file.metadata[`${arch}.attention.sliding_window_pattern`];
  if (entry?.type === "array") return Array.from({ length: layers }, (_, l) => Boolean(entry.value[l]));
  const n = entry === undefined ? period : Number(entry.value);
  return Array.from({ length: layers }, (_, l) => n === 0 || l % n < n - 1);
}

function numberValue(file: GgufFile, key: string): number | undefined {
  const value = file.value(key);
  return value === undefined ? undefined : Number(value);
}

function required(file: GgufFile, key: string): number {
  const value = numberValue(file, key);
  if (value === undefined || !Number.isFinite(value)) {
    throw new ConfigError(`missing metadata key "${key}" in the model file`, { path: file.path, field: key });
  }
  return value;
}

/** Read the config; throws ConfigError for an architecture the embedded trainer cannot run. */
export function readLlamaConfig(file: GgufFile): LlamaConfig {
  const arch = String(file.value("general.architecture") ?? "(none)");
  if (!(supportedArchitectures as readonly string[]).includes(arch)) {
    throw new ConfigError(
      `unsupported architecture ${arch}; supported: ${supportedArchitectures.join(", ")}. Use the hf trainer for other models`,
      { path: file.path, field: "general.architecture" },
    );
  }
  const a = arch as SupportedArchitecture;
  if (file.tensorInfo("rope_factors_long.weight") || file.tensorInfo("rope_factors_short.weight")) {
    throw new ConfigError(
      `this ${a} model uses LongRoPE frequency factors (rope_factors_long/short, the 128K-context variants), which the embedded trainer does not implement; use a model without them (e.g. a 4K-context variant) or the hf trainer`,
      { path: file.path, field: "rope_factors_long.weight" },
    );
  }
  const dim = required(file, `${a}.embedding_length`);
  const heads = required(file, `${a}.attention.head_count`);
  const kvHeads = numberValue(file, `${a}.attention.head_count_kv`) ?? heads;
  const headDim = numberValue(file, `${a}.attention.key_length`) ?? dim / heads;
  const embd = file.tensorInfo("token_embd.weight");
  if (!embd) throw new ConfigError("tensor token_embd.weight not found", { path: file.path });
  const vocabSize = numberValue(file, `${a}.vocab_size`) ?? embd.dims[1] ?? 0;
  const scalingType = file.value(`${a}.rope.scaling.type`);
  const scalingFactor = numberValue(file, `${a}.rope.scaling.factor`);
  let ropeFreqScale = 1;
  if (scalingType === "linear" && scalingFactor) ropeFreqScale = 1 / scalingFactor;
  else if (scalingType !== undefined && scalingType !== "none" && scalingType !== "linear") {
    throw new ConfigError(`unsupported rope scaling "${String(scalingType)}" (supported: none, linear)`, {
      path: file.path,
      field: `${a}.rope.scaling.type`,
    });
  }
  if (heads % kvHeads !== 0) {
    throw new ConfigError(`head_count ${heads} is not a multiple of head_count_kv ${kvHeads}`, { path: file.path });
  }
  const valueLength = numberValue(file, `${a}.attention.value_length`) ?? headDim;
  if (valueLength !== headDim) {
    throw new ConfigError(
      `attention value_length ${valueLength} differs from key_length ${headDim}, which is not supported`,
      {
        path: file.path,
        field: `${a}.attention.value_length`,
      },
    );
  }
  const ropeDims = numberValue(file, `${a}.rope.dimension_count`) ?? headDim;
  if (ropeDims > headDim || ropeDims % 2 !== 0) {
    throw new ConfigError(`rope.dimension_count ${ropeDims} must be even and at most the head size ${headDim}`, {
      path: file.path,
      field: `${a}.rope.dimension_count`,
    });
  }
  const layers = required(file, `${a}.block_count`);
  const ropeFreqBase = numberValue(file, `${a}.rope.freq_base`) ?? 10000;
  const gemma = a === "gemma2" || a === "gemma3";
  // gemma_pytorch's query_pre_attn_scalar: the 27B models scale by 1/sqrt(dim / heads) (llama.cpp keys it on the
  // layer count), the others by 1/sqrt(head size).
  const big = (a === "gemma2" && layers === 46) || (a === "gemma3" && layers === 62);
  const attentionScale = gemma && big ? 1 / Math.sqrt(dim / heads) : 1 / Math.sqrt(headDim);
  const softcap = (key: string, fallback: number | undefined) => {
    const value = numberValue(file, `${a}.${key}`) ?? fallback;
    return value === undefined || value === 0 ? undefined : value;
  };
  let slidingWindow: LlamaConfig["slidingWindow"];
  const window = numberValue(file, `${a}.attention.sliding_window`);
  if (a === "gemma2" || (a === "gemma3" && window !== undefined && window > 0)) {
    slidingWindow = {
      window: window ?? 4096,
      layers: slidingLayers(file, a, layers, a === "gemma2" ? 2 : 6),
      // Sliding layers keep the trained base (gemma3: rope.freq_base_swa, default 10000) and no scaling (gemma3)
      // or the model's (gemma2), as llama.cpp's rope_freq_*_train_swa.
      ropeFreqBase: a === "gemma2" ? ropeFreqBase : (numberValue(file, `${a}.rope.freq_base_swa`) ?? 10000),
      ropeFreqScale: a === "gemma2" ? ropeFreqScale : 1,
    };
  }
  return {
    architecture: a,
    vocabSize,
    contextLength: numberValue(file, `${a}.context_length`) ?? 2048,
    dim,
    layers,
    ffn: required(file, `${a}.feed_forward_length`),
    heads,
    kvHeads,
    headDim,
    ropeDims,
    ropeFreqBase,
    ropeFreqScale,
    ropeMode: a === "llama" || a === "mistral" ? "normal" : "neox",
    rmsEpsilon: numberValue(file, `${a}.attention.layer_norm_rms_epsilon`) ?? 1e-5,
    // gemma2 always reads the output head from the token embeddings.
    tiedEmbeddings: a === "gemma2" || file.tensorInfo("output.weight") === undefined,
    qkvBias: file.tensorInfo("blk.0.attn_q.bias") !== undefined,
    qkNorm: a === "qwen3" || a === "gemma3",
    fusedQkv: file.tensorInfo("blk.0.attn_qkv.weight") !== undefined,
    fusedGateUp: file.tensorInfo("blk.0.ffn_gate.weight") === undefined,
    postNorms: gemma,
    embeddingScale: gemma ? Math.fround(Math.sqrt(dim)) : 1,
    attentionScale,
    attentionSoftcap: a === "gemma2" ? softcap("attn_logit_softcapping", 50) : undefined,
    finalSoftcap:
      a === "gemma2"
        ? softcap("final_logit_softcapping", 30)
        : gemma
          ? softcap("final_logit_softcapping", undefined)
          : undefined,
    activation: gemma ? "gelu" : "silu",
    ...(slidingWindow ? { slidingWindow } : {}),
  };
}
