/** Frozen base weights of a LLaMA-family GGUF, dequantised to F32 (row-major (out, in), as ggml stores them). */
import { ConfigError } from "../../errors/index.js";
import { GgufFile, ggmlTypeName, ggmlTypes } from "../../gguf/index.js";
import { type LlamaConfig, readLlamaConfig } from "./model-config.js";

export interface LlamaLayerWeights {
  attnNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  /** (headDim) RMS norm weights of each q and k head (qwen3, gemma3). */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  /** Norm of the attention output before its residual add (gemma2/3). */
  attnPostNorm?: Float32Array;
  ffnNorm: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
  /** Norm of the MLP output before its residual add (gemma2/3). */
  ffnPostNorm?: Float32Array;
}

export interface LlamaWeights {
  /** (vocab, dim) row-major. */
  tokenEmbedding: Float32Array;
  layers: LlamaLayerWeights[];
  outputNorm: Float32Array;
  /** (vocab, dim) row-major; the token embeddings when tied. */
  output: Float32Array;
  /** Per-pair RoPE frequency divisors (rope_freqs.weight, LLaMA 3), when present. */
  ropeFactors?: Float32Array;
}

export interface LlamaModelFile {
  path: string;
  config: LlamaConfig;
  weights: LlamaWeights;
}

/**
 * Load config and all weights, dequantised once here. `alloc` places each tensor (default: the reader's array as it is;
 * the trainer passes its kernel's `alloc`). Unsupported architectures and quantisations throw ConfigError.
 */
export async function loadLlamaModel(path: string, alloc?: (length: number) => Float32Array): Promise<LlamaModelFile> {
  const file = await GgufFile.open(path);
  try {
    const config = readLlamaConfig(file);
    const read = async (name: string) => {
      const tensor = await file.readTensor(name);
      if (!alloc) return tensor;
      const placed = alloc(tensor.length);
      placed.set(tensor);
      return placed;
    };
    const optional = async (name: string) => (file.tensorInfo(name) ? await read(name) : undefined);
    // A fused (out, in) tensor split into consecutive blocks of rows (phi3's attn_qkv and ffn_up).
    const readSplit = async (name: string, rows: number[], width: number): Promise<Float32Array[]> => {
      const whole = await file.readTensor(name);
      let at = 0;
      return rows.map((n) => {
        const part = alloc ? alloc(n * width) : new Float32Array(n * width);
        part.set(whole.subarray(at, at + n * width));
        at += n * width;
        return part;
      });
    };
    const qDim = config.heads * config.headDim;
    const kvDim = config.kvHeads * config.headDim;
    const layers: LlamaLayerWeights[] = [];
    for (let l = 0; l < config.layers; l++) {
      const p = `blk.${l}`;
      const [q, k, v] = config.fusedQkv
        ? await readSplit(`${p}.attn_qkv.weight`, [qDim, kvDim, kvDim], config.dim)
        : [await read(`${p}.attn_q.weight`), await read(`${p}.attn_k.weight`), await read(`${p}.attn_v.weight`)];
      const [gate, up] = config.fusedGateUp
        ? await readSplit(`${p}.ffn_up.weight`, [config.ffn, config.ffn], config.dim)
        : [await read(`${p}.ffn_gate.weight`), await read(`${p}.ffn_up.weight`)];
      layers.push({
        attnNorm: await read(`${p}.attn_norm.weight`),
        q: q!,
        k: k!,
        v: v!,
        o: await read(`${p}.attn_output.weight`),
        qBias: await optional(`${p}.attn_q.bias`),
        kBias: await optional(`${p}.attn_k.bias`),
        vBias: await optional(`${p}.attn_v.bias`),
        ...(config.qkNorm
          ? { qNorm: await read(`${p}.attn_q_norm.weight`), kNorm: await read(`${p}.attn_k_norm.weight`) }
          : {}),
        ...(config.postNorms ? { attnPostNorm: await read(`${p}.post_attention_norm.weight`) } : {}),
        ffnNorm: await read(`${p}.ffn_norm.weight`),
        gate: gate!,
        up: up!,
        down: await read(`${p}.ffn_down.weight`),
        ...(config.postNorms ? { ffnPostNorm: await read(`${p}.post_ffw_norm.weight`) } : {}),
      });
    }
    const tokenEmbedding = await read("token_embd.weight");
    const weights: LlamaWeights = {
      tokenEmbedding,
      layers,
      outputNorm: await read("output_norm.weight"),
      output: config.tiedEmbeddings ? tokenEmbedding : await read("output.weight"),
      ropeFactors: await optional("rope_freqs.weight"),
    };
    return { path, config, weights };
  } finally {
    await file.close();
  }
}

/**
 * The config from a GGUF's header, without loading weights. `checkTensorTypes` (default false) also refuses a file
 * with a tensor type that loadLlamaModel cannot dequantise.
 */
export async function readLlamaModelConfig(
  path: string,
  options: { checkTensorTypes?: boolean } = {},
): Promise<LlamaConfig> {
  const file = await GgufFile.open(path);
  try {
    const config = readLlamaConfig(file);
    if (options.checkTensorTypes) checkTensorTypes(file);
    return config;
  } finally {
    await file.close();
  }
}

/** Throws the reader's ConfigError for the first tensor whose storage type cannot be dequantised. */
function checkTensorTypes(file: GgufFile): void {
  for (const tensor of file.header.tensors) {
    if (ggmlTypeName(tensor.type) === undefined) {
      throw new ConfigError(
        `tensor "${tensor.name}" has ggml type ${tensor.type}, which selfalign cannot dequantise (supported: ${Object.keys(ggmlTypes).join(", ")}). Use a GGUF in one of these types (F16, Q8_0, or a Q4_K_M/Q5_K_M/Q6_K file) or re-convert the model with --outtype f16`,
        { path: file.path, field: tensor.name },
      );
    }
  }
}
