/**
 * Reward inference on the embedded llama.cpp engine: the base with the reward model's LoRA, an embeddings context
 * (llama.cpp then returns, for the last evaluated token, the final hidden state after the output RMSNorm, not
 * normalised any further when the model pools nothing), and the head r = w · h applied here. With `exact` (the
 * default: no flash attention, an F32 KV cache) it equals the trainer's forward to float32 rounding.
 */
import { access, readFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel } from "node-llama-cpp";
import { ConfigError } from "../../errors/index.js";
import { GgufFile } from "../../gguf/index.js";
import { getSharedLlama } from "../../backends/llama-cpp/llama-instance.js";
import { readRewardHead } from "./reward-head.js";
import { type RewardModelInfo, rewardModelFile, rewardModelInfoSchema } from "./reward-model-info.js";

export interface RewardModelOptions {
  /** The base GGUF. Default: where it was at training time (reward-model.json `basePath`). */
  base?: string;
  /** Tokens per scored text at most. Default: the base model's context length, at most 4096 (an F32 KV cache). */
  contextSize?: number;
  /** Default: llama.cpp's choice. */
  threads?: number;
  /** Flash attention off and an F32 KV cache, so rewards equal the trainer's. Default true. */
  exact?: boolean;
  /** A llama.cpp binding to use (default: the shared CPU one). */
  llama?: Llama;
}

/** node-llama-cpp's native context call that returns the embedding of the last evaluated token (internal API). */
interface NativeEmbeddingContext {
  getEmbedding(inputTokensLength: number): Float64Array;
}

/** llama.cpp pooling types (`<arch>.pooling_type`) under which the embedding is the last token's hidden state. */
const unpooled = new Set([0, 3]);

export class RewardModel {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly info: RewardModelInfo,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence,
    private readonly head: Float32Array,
    private readonly native: NativeEmbeddingContext,
  ) {}

  /** Load a reward model folder written by the trainer (reward-model.json, adapter.gguf, reward-head.safetensors). */
  static async load(dir: string, options: RewardModelOptions = {}): Promise<RewardModel> {
    const infoPath = join(dir, rewardModelFile);
    const raw = await readFile(infoPath, "utf8").catch((error: unknown) => {
      throw new ConfigError(
        `cannot read ${rewardModelFile}: ${(error as Error).message}; is this a folder written by reward-model training?`,
        { path: infoPath, cause: error },
      );
    });
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (error) {
      throw new ConfigError(`is not valid JSON (${(error as Error).message})`, { path: infoPath });
    }
    const parsed = rewardModelInfoSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ConfigError(`${issue.message}`, { path: infoPath, field: issue.path.join(".") });
    }
    const info = parsed.data;
    const base = options.base ?? info.basePath;
    await access(base).catch(() => {
      throw new ConfigError(
        `the base model ${base} is not there; pass the base GGUF (${info.base}) it was trained on`,
        { path: infoPath, field: "basePath" },
      );
    });
    await checkUnpooled(base);
    const head = await readRewardHead(resolveIn(dir, info.head), info.hidden);
    const llama = options.llama ?? (await getSharedLlama(false));
    const model = await llama.loadModel({ modelPath: base });
    try {
      if (model.embeddingVectorSize !== info.hidden) {
        throw new ConfigError(
          `the base model's hidden size is ${model.embeddingVectorSize}, the reward head's ${info.hidden}; is it the base model it was trained on?`,
          { path: base },
        );
      }
      const exact = options.exact ?? true;
      // `_embeddings` is the option node-llama-cpp's own embedding context passes; that context takes no LoRA.
      const context = await model.createContext({
        contextSize: options.contextSize ?? Math.min(model.trainContextSize, 4096),
        sequences: 1,
        lora: { adapters: [{ filePath: resolveIn(dir, info.adapter), scale: 1 }] },
        ...(options.threads === undefined ? {} : { threads: options.threads }),
        ...(exact
          ? { flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" }
          : {}),
        _embeddings: true,
      } as Parameters<LlamaModel["createContext"]>[0]);
      const native = (context as unknown as { _ctx?: Partial<NativeEmbeddingContext> })._ctx;
      if (typeof native?.getEmbedding !== "function") {
        throw new Error("this node-llama-cpp version has no native getEmbedding; reward inference needs 3.22");
      }
      return new RewardModel(info, model, context, context.getSequence(), head, native as NativeEmbeddingContext);
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  /** Tokens the reward of `text` is read from: BOS + tokens(text), as in training. */
  tokenize(text: string): number[] {
    const tokens = this.model.tokenize(text).map(Number);
    const bos = this.model.tokens.bos;
    return this.info.addBos && bos !== null ? [Number(bos), ...tokens] : tokens;
  }

  /** The reward of each text (prompt and response as the reward model was trained to read them), in order. */
  async score(texts: readonly string[]): Promise<number[]> {
    const rewards: number[] = [];
    for (const text of texts) rewards.push(await this.scoreTokens(this.tokenize(text)));
    return rewards;
  }

  /** The reward of one token sequence (its last token is where the reward is read). */
  scoreTokens(tokens: readonly number[]): Promise<number> {
    const run = async () => {
      if (tokens.length === 0) throw new ConfigError("cannot score an empty text");
      if (tokens.length > this.context.contextSize) {
        throw new ConfigError(
          `the text is ${tokens.length} tokens long, more than the reward model's context of ${this.context.contextSize}; raise contextSize or shorten it`,
        );
      }
      await this.sequence.clearHistory();
      const iterator = this.sequence.evaluate(
        tokens as Parameters<LlamaContextSequence["evaluate"]>[0],
        {
          _noSampling: true,
        } as Parameters<LlamaContextSequence["evaluate"]>[1],
      );
      // The first step evaluates every token (the last one with an output row) and samples nothing.
      for await (const _ of iterator) break;
      const hidden = this.native.getEmbedding(tokens.length);
      let reward = 0;
      for (let j = 0; j < this.head.length; j++) reward += this.head[j]! * hidden[j]!;
      return reward;
    };
    // One sequence: texts are scored one at a time.
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}

function resolveIn(dir: string, path: string): string {
  return isAbsolute(path) ? path : join(dir, path);
}

/** Refuses a base whose GGUF asks llama.cpp to pool embeddings (mean, CLS, ...): the reward reads the last token. */
async function checkUnpooled(base: string): Promise<void> {
  const file = await GgufFile.open(base);
  try {
    const architecture = String(file.value("general.architecture"));
    const pooling = file.value(`${architecture}.pooling_type`);
    if (pooling !== undefined && !unpooled.has(Number(pooling))) {
      throw new ConfigError(
        `the base model sets ${architecture}.pooling_type = ${pooling}; the reward is read from the last token's hidden state, which llama.cpp returns only without pooling`,
        { path: base },
      );
    }
  } finally {
    await file.close();
  }
}
