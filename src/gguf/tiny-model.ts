import { BYTE_VOCAB_SIZE, byteVocabMetadata } from "./byte-vocab.js";
import { syntheticVocabTokens } from "./synthetic-vocab.js";
import { writeGguf, type GgufTensorInput } from "./gguf-writer.js";
import { mulberry32Normal } from "../random/mulberry32.js";
import { type GgufValue, gguf } from "./gguf-types.js";

/** Architectures the tiny-model writer can produce: `llama` (normal RoPE) and `qwen2` (NeoX RoPE, q/k/v biases). */
export const tinyArchitectures = ["llama", "qwen2"] as const;
export type TinyArchitecture = (typeof tinyArchitectures)[number];

export interface TinyModelOptions {
  /** Default "llama". */
  architecture?: TinyArchitecture;
  /** Default 2. */
  layers?: number;
  /** Embedding width. Default 64. */
  dim?: number;
  /** Default 4. */
  heads?: number;
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
  /** Vocabulary size: 354 (the byte vocabulary, default) or more, extended with synthetic word tokens
   * (synthetic-vocab.ts) so a model can have a real model's exact shape, e.g. 49152. */
  vocabSize?: number;
  /** Share token embeddings with the output head. Default false. */
  tiedEmbeddings?: boolean;
  /** RoPE base. Default 10000. */
  ropeFreqBase?: number;
  /** RMSNorm epsilon. Default 1e-5. */
  rmsEpsilon?: number;
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
    vocabSize: options.vocabSize ?? BYTE_VOCAB_SIZE,
  } satisfies Required<TinyModelOptions>;
  if (options.kvHeads === undefined && options.heads === undefined) resolved.kvHeads = 2;
  if (resolved.dim % resolved.heads !== 0)
    throw new Error(`dim ${resolved.dim} must be divisible by heads ${resolved.heads}`);
  if (resolved.heads % resolved.kvHeads !== 0)
    throw new Error(`heads ${resolved.heads} must be divisible by kv-heads ${resolved.kvHeads}`);
  if (!Number.isInteger(resolved.vocabSize) || resolved.vocabSize < BYTE_VOCAB_SIZE || resolved.vocabSize > 1_000_000)
    throw new Error(`vocab size must be an integer from ${BYTE_VOCAB_SIZE} to 1000000, got ${resolved.vocabSize}`);
  if (resolved.dtype === "Q8_0")
    for (const [name, width] of [
      ["dim", resolved.dim],
      ["ffn", resolved.ffn],
    ] as const)
      if (width % 32 !== 0)
        throw new Error(`Q8_0 stores rows in blocks of 32 values: ${name} ${width} must be a multiple of 32`);
  return resolved;
}

/** Build the tensors and metadata of a random-weight LLaMA-family model with the byte vocabulary. */
export function buildTinyModel(options: TinyModelOptions = {}): {
  metadata: Record<string, GgufValue>;
  tensors: GgufTensorInput[];
  parameterCount: number;
} {
  const o = resolveTinyModelOptions(options);
  const normal = mulberry32Normal(o.seed);
  const headDim = o.dim / o.heads;
  const kvDim = headDim * o.kvHeads;
  const vocab = o.vocabSize;
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
    tensors.push(weight(`${p}.attn_q.weight`, o.dim, o.dim));
    tensors.push(weight(`${p}.attn_k.weight`, o.dim, kvDim));
    tensors.push(weight(`${p}.attn_v.weight`, o.dim, kvDim));
    if (o.architecture === "qwen2") {
      tensors.push({ name: `${p}.attn_q.bias`, dims: [o.dim], data: random(o.dim, 0.1) });
      tensors.push({ name: `${p}.attn_k.bias`, dims: [kvDim], data: random(kvDim, 0.1) });
      tensors.push({ name: `${p}.attn_v.bias`, dims: [kvDim], data: random(kvDim, 0.1) });
    }
    tensors.push(weight(`${p}.attn_output.weight`, o.dim, o.dim));
    tensors.push({ name: `${p}.ffn_norm.weight`, dims: [o.dim], data: norm(o.dim) });
    tensors.push(weight(`${p}.ffn_gate.weight`, o.dim, o.ffn));
    tensors.push(weight(`${p}.ffn_up.weight`, o.dim, o.ffn));
    tensors.push(weight(`${p}.ffn_down.weight`, o.ffn, o.dim));
  }
  tensors.push({ name: "output_norm.weight", dims: [o.dim], data: norm(o.dim) });
  if (!o.tiedEmbeddings) tensors.push(weight("output.weight", o.dim, vocab, 2 / Math.sqrt(o.dim)));

  const a = o.architecture;
  const metadata: Record<string, GgufValue> = {
    "general.architecture": gguf.string(a),
    "general.name": gguf.string(`selfalign-tiny-${a}-${o.layers}x${o.dim}`),
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
    ...byteVocabMetadata(vocab === BYTE_VOCAB_SIZE ? undefined : syntheticVocabTokens(vocab)),
  };
  const parameterCount = tensors.reduce((sum, t) => sum + t.data.length, 0);
  return { metadata, tensors, parameterCount };
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
