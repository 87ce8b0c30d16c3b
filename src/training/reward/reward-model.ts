/**
 * Reward inference on the embedded llama.cpp engine: the base with the reward model's LoRA, an embeddings context
 * (llama.cpp then returns, for the last evaluated token, the final hidden state after the output RMSNorm, not
 * normalised any further when the model pools nothing), and the head r = w · h applied here. With `exact` (the
 * default: no flash attention, an F32 KV cache) it equals the trainer's forward to float32 rounding.
 *
 * `parallel` texts are scored at once, each on a context of its own (one weights copy, one KV cache each): llama.cpp
 * hands back only the last output row of a decode, so sequences batched into one context could not each get theirs.
 */
import { access, readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { isAbsolute, join } from "node:path";
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel } from "node-llama-cpp";
import { AbortedError, ConfigError } from "../../errors/index.js";
import { GgufFile } from "../../gguf/index.js";
import { getSharedLlama } from "../../backends/llama-cpp/llama-instance.js";
import { readRewardHead } from "./reward-head.js";
import { type RewardModelInfo, rewardModelFile, rewardModelInfoSchema } from "./reward-model-info.js";

export interface RewardModelOptions {
  /** The base GGUF. Default: where it was at training time (reward-model.json `basePath`). */
  base?: string;
  /** Tokens per scored text at most. Default: the base model's context length, at most 4096 (an F32 KV cache). */
  contextSize?: number;
  /** Threads of each context. Default: llama.cpp's choice with one context, else the cores shared among them. */
  threads?: number;
  /** Texts scored at the same time, one context each. Default 1. */
  parallel?: number;
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

/** One context scoring one text at a time. */
interface Slot {
  context: LlamaContext;
  sequence: LlamaContextSequence;
  native: NativeEmbeddingContext;
}

export class RewardModel {
  private readonly free: Slot[];
  private readonly waiting: Array<{ resolve: (slot: Slot) => void; reject: (error: unknown) => void }> = [];

  private constructor(
    readonly info: RewardModelInfo,
    /** The base GGUF the adapter is applied to. */
    readonly basePath: string,
    private readonly model: LlamaModel,
    private readonly slots: readonly Slot[],
    private readonly head: Float32Array,
  ) {
    this.free = [...slots];
  }

  /** Texts scored at the same time. */
  get parallel(): number {
    return this.slots.length;
  }

  /** Tokens per scored text at most. */
  get contextSize(): number {
    return this.slots[0]!.context.contextSize;
  }

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
      const parallel = options.parallel ?? 1;
      if (!Number.isInteger(parallel) || parallel < 1)
        throw new ConfigError(`parallel must be a positive integer, got ${parallel}`, { field: "parallel" });
      const threads =
        options.threads ?? (parallel > 1 ? Math.max(1, Math.floor(availableParallelism() / parallel)) : undefined);
      const slots: Slot[] = [];
      for (let i = 0; i < parallel; i++) {
        // `_embeddings` is the option node-llama-cpp's own embedding context passes; that context takes no LoRA.
        const context = await model.createContext({
          contextSize: options.contextSize ?? Math.min(model.trainContextSize, 4096),
          sequences: 1,
          lora: { adapters: [{ filePath: resolveIn(dir, info.adapter), scale: 1 }] },
          ...(threads === undefined ? {} : { threads }),
          ...(exact
            ? { flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" }
            : {}),
          _embeddings: true,
        } as Parameters<LlamaModel["createContext"]>[0]);
        const native = (context as unknown as { _ctx?: Partial<NativeEmbeddingContext> })._ctx;
        if (typeof native?.getEmbedding !== "function") {
          throw new Error("this node-llama-cpp version has no native getEmbedding; reward inference needs 3.22");
        }
        slots.push({ context, sequence: context.getSequence(), native: native as NativeEmbeddingContext });
      }
      return new RewardModel(info, base, model, slots, head);
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

  /** The text of tokens (no BOS added), for cutting a text to a number of tokens. */
  detokenize(tokens: readonly number[]): string {
    return this.model.detokenize(tokens as Parameters<LlamaModel["detokenize"]>[0]);
  }

  /** The reward of each text (prompt and response as the reward model was trained to read them), in order. */
  score(texts: readonly string[], signal?: AbortSignal): Promise<number[]> {
    return Promise.all(texts.map((text) => this.scoreTokens(this.tokenize(text), signal)));
  }

  /**
   * The reward of one token sequence (its last token is where the reward is read). Waits for a free context when
   * all are busy; `signal` gives up the wait (a text already being evaluated finishes).
   */
  async scoreTokens(tokens: readonly number[], signal?: AbortSignal): Promise<number> {
    if (tokens.length === 0) throw new ConfigError("cannot score an empty text");
    if (tokens.length > this.contextSize) {
      throw new ConfigError(
        `the text is ${tokens.length} tokens long, more than the reward model's context of ${this.contextSize}; raise contextSize or shorten it`,
      );
    }
    const slot = await this.acquire(signal);
    try {
      await slot.sequence.clearHistory();
      const iterator = slot.sequence.evaluate(
        tokens as Parameters<LlamaContextSequence["evaluate"]>[0],
        {
          _noSampling: true,
        } as Parameters<LlamaContextSequence["evaluate"]>[1],
      );
      // The first step evaluates every token (the last one with an output row) and samples nothing.
      for await (const _ of iterator) break;
      const hidden = slot.native.getEmbedding(tokens.length);
      let reward = 0;
      for (let j = 0; j < this.head.length; j++) reward += this.head[j]! * hidden[j]!;
      return reward;
    } finally {
      this.release(slot);
    }
  }

  /** Texts waiting for a free context. */
  get queued(): number {
    return this.waiting.length;
  }

  private acquire(signal?: AbortSignal): Promise<Slot> {
    if (signal?.aborted) return Promise.reject(new AbortedError("the reward request was given up"));
    const slot = this.free.pop();
    if (slot) return Promise.resolve(slot);
    return new Promise<Slot>((resolve, reject) => {
      const entry = {
        resolve: (given: Slot) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(given);
        },
        reject,
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(entry);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(new AbortedError("the reward request was given up while it waited for a free context"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  private release(slot: Slot): void {
    const next = this.waiting.shift();
    if (next) next.resolve(slot);
    else this.free.push(slot);
  }

  async dispose(): Promise<void> {
    for (const entry of this.waiting.splice(0)) entry.reject(new AbortedError("the reward model was closed"));
    for (const slot of this.slots) await slot.context.dispose();
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
