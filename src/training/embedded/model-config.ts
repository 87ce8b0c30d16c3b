/**
 * Hyper-parameters of a LLaMA-family GGUF, read from its metadata the way llama.cpp reads them.
 * Supported: llama (and Mistral/SmolLM-style models converted as llama), mistral, qwen2 (NeoX RoPE, q/k/v biases).
 */
import { ConfigError } from "../../errors/index.js";
import type { GgufFile } from "../../gguf/index.js";

export const supportedArchitectures = ["llama", "mistral", "qwen2"] as const;
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
  if (headDim * heads !== dim) {
    throw new ConfigError(`attention key_length ${headDim} × heads ${heads} != embedding_length ${dim}`, {
      path: file.path,
    });
  }
  return {
    architecture: a,
    vocabSize,
    contextLength: numberValue(file, `${a}.context_length`) ?? 2048,
    dim,
    layers: required(file, `${a}.block_count`),
    ffn: required(file, `${a}.feed_forward_length`),
    heads,
    kvHeads,
    headDim,
    ropeDims: numberValue(file, `${a}.rope.dimension_count`) ?? headDim,
    ropeFreqBase: numberValue(file, `${a}.rope.freq_base`) ?? 10000,
    ropeFreqScale,
    ropeMode: a === "qwen2" ? "neox" : "normal",
    rmsEpsilon: numberValue(file, `${a}.attention.layer_norm_rms_epsilon`) ?? 1e-5,
    tiedEmbeddings: file.tensorInfo("output.weight") === undefined,
    qkvBias: file.tensorInfo("blk.0.attn_q.bias") !== undefined,
  };
}
