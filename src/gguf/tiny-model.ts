import { BYTE_VOCAB_SIZE } from "./byte-vocab.js";
import { byteVocabulary, type Vocabulary } from "./vocabulary.js";
import {
  alwaysTied,
  architectureLayerTensors,
  architectureMetadata,
  fuseTensors,
  type TinyArchitecture,
  type TinyArchitectureExtras,
} from "./tiny-architectures.js";
import { writeGguf, type GgufTensorInput } from "./gguf-writer.js";
import { mulberry32Normal } from "../random/mulberry32.js";
import { type GgufValue, gguf } from "./gguf-types.js";

export { type TinyArchitecture, type TinyArchitectureExtras, tinyArchitectures } from "./tiny-architectures.js";

export interface TinyModelOptions {
  /** Default "llama". */
  architecture?: TinyArchitecture;
  /** Default 2. */
  layers?: number;
  /** Embedding width. Default 64. */
  dim?: number;
  /** Default 4. */
  heads?: number;
  /** Size of each attention head (attention.key_length). Default dim / heads; qwen3 and gemma may differ. */
  headDim?: number;
  /** Default 2 (grouped-query attention). */
  kvHeads?: number;
  /** Default 128. */
  ffn?: number;
  /** Default 2048. */
  contextLength?: number;
  /** Default 1. */
  seed?: number;
  /** Storage type of the 2-D weights. Default "F32". Norms are always F32. Q8_0 needs `dim` and `ffn` in
   * multiples of 32. */
  dtype?: "F32" | "F16" | "Q8_0";
  /** Vocabulary size without `vocabulary`: 354 (the byte vocabulary, default) or more, extended with synthetic word
   * tokens (synthetic-vocab.ts) so a model can have a real model's exact shape, e.g. 49152. */
  vocabSize?: number;
  /** Share token embeddings with the output head. Default false. */
  tiedEmbeddings?: boolean;
  /** RoPE base. Default 10000. */
  ropeFreqBase?: number;
  /** RMSNorm epsilon. Default 1e-5. */
  rmsEpsilon?: number;
  /**
   * Tokenizer (every `tokenizer.*` key, chat template included) and so the vocabulary size. Default: selfalign's
   * byte-level vocabulary. See vocabulary.ts for real tokenizers.
   */
  vocabulary?: Vocabulary;
  /** Sliding window, soft-caps, ... of the architectures that have them (see tiny-architectures.ts). */
  extras?: TinyArchitectureExtras;
}

/** Seeded uniform and normal generators (re-exported here: tests and tools build tiny models from a seed). */
export { mulberry32 as seededRandom, mulberry32Normal as seededNormal } from "../random/mulberry32.js";

export function resolveTinyModelOptions(options: TinyModelOptions = {}): Required<TinyModelOptions> {
  const resolved = {
    architecture: options.architecture ?? "llama",
    layers: options.layers ?? 2,
    dim: options.dim ?? 64,
    heads: options.heads ?? 4,
    kvHeads: options.kvHeads ?? options.heads ?? 2,
    ffn: options.ffn ?? 128,
    contextLength: options.contextLength ?? 2048,
    seed: options.seed ?? 1,
    dtype: options.dtype ?? "F32",
    tiedEmbeddings: options.tiedEmbeddings ?? false,
    ropeFreqBase: options.ropeFreqBase ?? 10000,
    rmsEpsilon: options.rmsEpsilon ?? 1e-5,
    vocabulary: options.vocabulary ?? byteVocabulary(options.vocabSize ?? BYTE_VOCAB_SIZE),
    vocabSize: options.vocabulary?.size ?? options.vocabSize ?? BYTE_VOCAB_SIZE,
    headDim: options.headDim ?? (options.dim ?? 64) / (options.heads ?? 4),
    extras: options.extras ?? {},
  } satisfies Required<TinyModelOptions>;
  if (options.kvHeads === undefined && options.heads === undefined) resolved.kvHeads = 2;
  if (options.headDim === undefined && resolved.dim % resolved.heads !== 0)
    throw new Error(`dim ${resolved.dim} must be divisible by heads ${resolved.heads}`);
  if (!Number.isInteger(resolved.headDim) || resolved.headDim % 2 !== 0)
    throw new Error(`the head size must be an even integer, got ${resolved.headDim}`);
  if (resolved.heads % resolved.kvHeads !== 0)
    throw new Error(`heads ${resolved.heads} must be divisible by kv-heads ${resolved.kvHeads}`);
  if (options.vocabulary && options.vocabSize !== undefined && options.vocabSize !== options.vocabulary.size)
    throw new Error(
      `vocab size ${options.vocabSize} disagrees with the vocabulary given (${options.vocabulary.size} tokens); give one`,
    );
  if (resolved.dtype === "Q8_0")
    for (const [name, width] of [
      ["dim", resolved.dim],
      ["ffn", resolved.ffn],
    ] as const)
      if (width % 32 !== 0)
        throw new Error(`Q8_0 stores rows in blocks of 32 values: ${name} ${width} must be a multiple of 32`);
  return resolved;
}

/** Build the tensors and metadata of a random-weight LLaMA-family model (byte vocabulary unless told otherwise). */
export function buildTinyModel(options: TinyModelOptions = {}): {
  metadata: Record<string, GgufValue>;
  tensors: GgufTensorInput[];
  parameterCount: number;
} {
  const o = resolveTinyModelOptions(options);
  const normal = mulberry32Normal(o.seed);
  const headDim = o.headDim;
  const kvDim = headDim * o.kvHeads;
  const qDim = headDim * o.heads;
  const vocab = o.vocabulary.size;
  const random = (n: number, std: number): Float32Array => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = normal() * std;
    return out;
  };
  const norm = (n: number): Float32Array => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = 1 + 0.1 * normal();
    return out;
  };
  const weight = (name: string, nIn: number, nOut: number, std = 1 / Math.sqrt(nIn)): GgufTensorInput => ({
    name,
    dims: [nIn, nOut],
    data: random(nIn * nOut, std),
    type: o.dtype,
  });
  const tensors: GgufTensorInput[] = [weight("token_embd.weight", o.dim, vocab, 1)];
  for (let layer = 0; layer < o.layers; layer++) {
    const p = `blk.${layer}`;
    tensors.push({ name: `${p}.attn_norm.weight`, dims: [o.dim], data: norm(o.dim) });
    tensors.push(weight(`${p}.attn_q.weight`, o.dim, qDim));
    tensors.push(weight(`${p}.attn_k.weight`, o.dim, kvDim));
    tensors.push(weight(`${p}.attn_v.weight`, o.dim, kvDim));
    tensors.push(
      ...architectureLayerTensors(o.architecture, { prefix: p, dim: o.dim, headDim, kvDim, qDim, norm, random }),
    );
    tensors.push(weight(`${p}.attn_output.weight`, qDim, o.dim));
    tensors.push({ name: `${p}.ffn_norm.weight`, dims: [o.dim], data: norm(o.dim) });
    tensors.push(weight(`${p}.ffn_gate.weight`, o.dim, o.ffn));
    tensors.push(weight(`${p}.ffn_up.weight`, o.dim, o.ffn));
    tensors.push(weight(`${p}.ffn_down.weight`, o.ffn, o.dim));
  }
  tensors.push({ name: "output_norm.weight", dims: [o.dim], data: norm(o.dim) });
  if (!o.tiedEmbeddings && !alwaysTied(o.architecture))
    tensors.push(weight("output.weight", o.dim, vocab, 2 / Math.sqrt(o.dim)));

  const a = o.architecture;
  const metadata: Record<string, GgufValue> = {
    "general.architecture": gguf.string(a),
    // llama.cpp sets attributes of "<|endoftext|>" for any model whose name contains "phi3", and fails to load a
    // vocabulary without that token: the byte vocabulary has none, so a phi3 model is named "phi" here.
    "general.name": gguf.string(`selfalign-tiny-${a === "phi3" ? "phi" : a}-${o.layers}x${o.dim}`),
    // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7.
    "general.file_type": gguf.u32({ F32: 0, F16: 1, Q8_0: 7 }[o.dtype]),
    [`${a}.vocab_size`]: gguf.u32(vocab),
    [`${a}.context_length`]: gguf.u32(o.contextLength),
    [`${a}.embedding_length`]: gguf.u32(o.dim),
    [`${a}.block_count`]: gguf.u32(o.layers),
    [`${a}.feed_forward_length`]: gguf.u32(o.ffn),
    [`${a}.attention.head_count`]: gguf.u32(o.heads),
    [`${a}.attention.head_count_kv`]: gguf.u32(o.kvHeads),
    [`${a}.rope.dimension_count`]: gguf.u32(headDim),
    [`${a}.rope.freq_base`]: gguf.f32(o.ropeFreqBase),
    [`${a}.attention.layer_norm_rms_epsilon`]: gguf.f32(o.rmsEpsilon),
    ...architectureMetadata(a, headDim, o.extras),
    ...o.vocabulary.metadata,
  };
  const parameterCount = tensors.reduce((sum, t) => sum + t.data.length, 0);
  return { metadata, tensors: fuseTensors(a, tensors), parameterCount };
}

/** Write a random-weight tiny model GGUF. Returns the parameter count. */
export async function writeTinyModel(
  path: string,
  options: TinyModelOptions = {},
): Promise<{ parameterCount: number }> {
  const { metadata, tensors, parameterCount } = buildTinyModel(options);
  await writeGguf(path, { metadata, tensors });
  return { parameterCount };
}
