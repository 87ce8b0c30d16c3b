import { access } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import type { Llama, LlamaContext, LlamaContextOptions, LlamaGrammar, LlamaModel, Token } from "node-llama-cpp";
import { AbortedError, BackendError, ConfigError, throwIfAborted } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type {
  Capabilities,
  ChatMessage,
  ChatResult,
  CompleteOptions,
  Completion,
  CompletionRequest,
  CompletionResult,
  LanguageModel,
  SamplingOptions,
  ScoreOptions,
  ScoreResult,
  TokenizeOptions,
} from "../language-model.js";
import { runConcurrently } from "../run-concurrently.js";
import { chatWrapperFor, renderChat } from "./chat-prompt.js";
import {
  checkPromptFits,
  defaultMaxTokens,
  type GenerateOptions,
  type GenerateResult,
  generateOnSequence,
} from "./generate.js";
import { getSharedLlama, subscribeLlamaLogs } from "./llama-instance.js";
import { resolveModelSource } from "./model-source.js";
import {
  DecodeGate,
  emptyBatchStats,
  gatherSequencesStrategy,
  type NativeBatchStats,
  type NativeBatchTuning,
  tuneNativeBatches,
} from "./native-batch.js";
import { BatchScorer, scoringSequencesFor } from "./batch-scorer.js";
import { PersistentThreads } from "./persistent-threads.js";
import { tokenizeWithBos } from "./scorer.js";
import { SequencePool } from "./sequence-pool.js";
import { checkTokenIds, vocabularySizeOf } from "./token-ids.js";

export interface LlamaCppBackendOptions {
  /** Path to a .gguf file, or an `hf:` URI (`hf:owner/repo/file.gguf`, `hf:owner/repo:quant`) downloaded to `cacheDir`. */
  model: string;
  /** Tokens per sequence. Default: min(the model's trained context, 4096). */
  contextSize?: number;
  /** Sequences decoded in parallel by `complete`. Default 4. */
  sequences?: number;
  /**
   * Threads for decoding (batches under 64 tokens). Default "auto": per batch size, 1 thread and `batchThreads` are
   * each measured on a few decode calls and the faster is kept (on small VMs each multi-threaded decode call pays a
   * fixed synchronisation cost, so one sequence can decode faster on 1 thread; on real cores all of them win).
   * With `deterministic`, the default is 1.
   */
  threads?: number | "auto";
  /** Threads for long prompt evaluation (batches of 64+ tokens). Default: the number of CPU cores. */
  batchThreads?: number;
  /**
   * Sequences of the scoring context: `score` evaluates up to this many continuations (of one call, or of calls
   * made at the same time) in the same decode calls, the prompt's shared prefix evaluated once. Default: up to 8,
   * as many as fit in 1 GiB of F32 KV cache; 1 with `deterministic`.
   */
  scoreSequences?: number;
  /** LoRA adapters (GGUF) applied to generation and scoring; `scale` defaults to 1. */
  lora?: Array<{ path: string; scale?: number }>;
  /** Offload to a GPU: true / "auto" use one when node-llama-cpp finds a GPU build. Default false (CPU). */
  gpu?: boolean | "auto";
  /** Where `hf:` models are downloaded. Default: `models/` under SELFALIGN_CACHE_DIR (~/.cache/selfalign). */
  cacheDir?: string;
  /** Default sampling seed when a request gives none. Default: random per call. */
  seed?: number;
  /** Reuse the KV cache of the prompt prefix a sequence already holds. Default true; false evaluates every prompt
   * from scratch (a baseline for benchmarks). */
  reusePrefix?: boolean;
  /**
   * Copy a long shared prompt prefix's KV cache between sequences instead of evaluating it on each (uses a
   * node-llama-cpp internal; falls back to evaluating). Default true.
   */
  sharePrefix?: boolean;
  /**
   * Decode on one persistent ggml threadpool for the engine's life (the optional addon native/threadpool), as
   * llama.cpp's own server does, instead of threads started and joined at every decode call. Default true; without
   * the addon, or with false, decode threads follow `threads` as before (a baseline for benchmarks).
   */
  persistentThreads?: boolean;
  /**
   * Bit-reproducible generation whatever ran before: one sequence, every prompt evaluated from an empty KV cache,
   * flash attention off and an F32 KV cache. llama.cpp's results otherwise depend (at float-rounding level, which
   * sampling can amplify) on how prompts were batched and which prefix was cached, so a resumed run may differ
   * from an uninterrupted one. Costs prefix reuse and parallel decoding. Default false.
   */
  deterministic?: boolean;
  /** Receives download-progress events and llama.cpp warnings. */
  onProgress?: ProgressListener;
  /** Give up an `hf:` download that makes no progress for this long (ms). Default 20000. */
  downloadStallTimeoutMs?: number;
  /** Cancels model download and loading. */
  signal?: AbortSignal;
}

/** What exact (bit-reproducible) evaluation needs: flash attention off and an F32 KV cache. */
const exactContextOptions = {
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
} as const satisfies Partial<LlamaContextOptions>;

interface BackendParts {
  id: string;
  llama: Llama;
  model: LlamaModel;
  context: LlamaContext;
  tuning: NativeBatchTuning;
  /** Serialises the decode calls of the generation and scoring contexts. */
  gate: DecodeGate;
  /** The persistent threadpool both contexts decode on, when the native addon provides one. */
  threadpool?: PersistentThreads;
  contextSize: number;
  threads: number | "auto";
  batchThreads: number;
  scoreSequences: number;
  lora?: LlamaContextOptions["lora"];
  seed?: number;
  sharePrefix: boolean;
  reusePrefix: boolean;
  unsubscribeLogs: () => void;
}

/** Load a model (local GGUF or `hf:` URI) into an embedded llama.cpp engine. */
export async function createLlamaCppBackend(options: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
  const deterministic = options.deterministic ?? false;
  const sequences = deterministic ? 1 : (options.sequences ?? 4);
  if (!Number.isInteger(sequences) || sequences < 1)
    throw new ConfigError(`sequences must be a positive integer, got ${sequences}`, { field: "sequences" });
  // Deterministic runs keep one thread count for decoding (no measuring switches between counts).
  const threads = options.threads ?? (deterministic ? 1 : "auto");
  const batchThreads = options.batchThreads ?? availableParallelism();
  for (const [field, value] of [
    ["threads", threads === "auto" ? 1 : threads],
    ["batchThreads", batchThreads],
    ["scoreSequences", options.scoreSequences ?? 1],
  ] as const)
    if (!Number.isInteger(value) || value < 1)
      throw new ConfigError(`${field} must be a positive integer, got ${value}`, { field });
  const adapters = [];
  for (const adapter of options.lora ?? []) {
    const filePath = resolve(adapter.path);
    try {
      await access(filePath);
    } catch {
      throw new ConfigError(`LoRA adapter not found: expected a GGUF adapter file at ${filePath}.`, {
        path: filePath,
        field: "lora",
      });
    }
    adapters.push({ filePath, scale: adapter.scale ?? 1 });
  }
  const modelPath = await resolveModelSource(options.model, {
    cacheDir: options.cacheDir,
    onProgress: options.onProgress,
    signal: options.signal,
    stallTimeoutMs: options.downloadStallTimeoutMs,
  });
  throwIfAborted(options.signal);
  const unsubscribeLogs = subscribeLlamaLogs(options.onProgress);
  const gpu = options.gpu ?? false;
  let model: LlamaModel | undefined;
  try {
    const llama = await getSharedLlama(gpu);
    try {
      model = await llama.loadModel({ modelPath, gpuLayers: gpu === false ? 0 : "auto", loadSignal: options.signal });
    } catch (error) {
      throwIfAborted(options.signal);
      throw new BackendError(
        `could not load model ${modelPath}: ${(error instanceof Error ? error.message : String(error)).replace(/[.\s]+$/, "")}; expected a GGUF model that llama.cpp supports (a known architecture, from a llama.cpp of this version or older)`,
        { path: modelPath, cause: error },
      );
    }
    const contextSize = options.contextSize ?? Math.min(model.trainContextSize, 4096);
    const lora = adapters.length > 0 ? { adapters } : undefined;
    let context: LlamaContext;
    try {
      context = await model.createContext({
        contextSize,
        sequences,
        threads: Math.max(threads === "auto" ? 1 : threads, batchThreads),
        lora,
        ...(deterministic ? exactContextOptions : {}),
        // Decode steps wait a few microtask turns for every generating sequence (see native-batch.ts).
        ...(sequences > 1 ? { batching: { itemPrioritizationStrategy: gatherSequencesStrategy() } } : {}),
        createSignal: options.signal,
      });
    } catch (error) {
      throwIfAborted(options.signal);
      throw new BackendError(
        `could not create a llama.cpp context (${sequences} sequences x ${contextSize} tokens${lora ? `, ${adapters.length} LoRA adapter(s)` : ""}): ${error instanceof Error ? error.message : String(error)}. Lower contextSize or sequences, or check that each adapter was made for this model.`,
        { cause: error },
      );
    }
    const gate = new DecodeGate();
    const poolThreads = Math.max(threads === "auto" ? 1 : threads, batchThreads);
    let threadpool =
      (options.persistentThreads ?? true) && poolThreads > 1
        ? PersistentThreads.create(poolThreads).threads
        : undefined;
    const tuning = tuneNativeBatches(context, { decodeThreads: threads, batchThreads, gate, pool: threadpool });
    if (threadpool && !tuning.pooled) {
      threadpool.release();
      threadpool = undefined;
    }
    const loraId = adapters.map((a) => `+lora:${a.filePath}@${a.scale}`).join("");
    return new LlamaCppBackend({
      id: `llama-cpp:${options.model}${loraId}`,
      llama,
      model,
      context,
      tuning,
      gate,
      threadpool,
      contextSize,
      threads,
      batchThreads,
      scoreSequences: deterministic ? 1 : (options.scoreSequences ?? scoringSequencesFor(model, contextSize)),
      lora,
      seed: options.seed,
      sharePrefix: !deterministic && (options.sharePrefix ?? true) && (options.reusePrefix ?? true),
      reusePrefix: !deterministic && (options.reusePrefix ?? true),
      unsubscribeLogs,
    });
  } catch (error) {
    unsubscribeLogs();
    await model?.dispose();
    throw error;
  }
}

/** The `maxTokens` a request must fit or be refused (`maxTokensOverflow: "refuse"`), else undefined. */
function refusedMaxTokens(sampling: SamplingOptions): number | undefined {
  return sampling.maxTokensOverflow === "refuse" ? (sampling.maxTokens ?? defaultMaxTokens) : undefined;
}

/** The embedded backend: node-llama-cpp in-process, with parallel sequences and KV-cache prefix reuse. */
export class LlamaCppBackend implements LanguageModel {
  readonly id: string;
  readonly model: LlamaModel;
  private readonly parts: BackendParts;
  private readonly pool: SequencePool;
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private scoring?: Promise<{ context: LlamaContext; scorer: BatchScorer; tuning: NativeBatchTuning }>;
  private chatWrapper?: ReturnType<typeof chatWrapperFor>;
  private closed = false;
  private readonly vocabularySize: number | undefined;

  /** Use `createLlamaCppBackend`. */
  constructor(parts: BackendParts) {
    this.parts = parts;
    this.id = parts.id;
    this.model = parts.model;
    this.vocabularySize = vocabularySizeOf(parts.model);
    const sequences = Array.from({ length: parts.context.totalSequences }, () => parts.context.getSequence());
    this.pool = new SequencePool(sequences, parts.sharePrefix);
  }

  /** Native decode calls of the generation context so far and the tokens in them (diagnostics, benchmarks). */
  decodeStats(): NativeBatchStats & { tuned: boolean; persistentThreads: boolean } {
    return {
      ...this.parts.tuning.stats(),
      tuned: this.parts.tuning.active,
      persistentThreads: this.parts.threadpool !== undefined,
    };
  }

  /** Native decode calls of the scoring context so far (none before the first `score`; diagnostics, benchmarks). */
  async scoreDecodeStats(): Promise<NativeBatchStats & { sequences: number }> {
    const stats = this.scoring ? (await this.scoring).tuning.stats() : emptyBatchStats();
    return { ...stats, sequences: this.parts.scoreSequences };
  }

  capabilities(): Capabilities {
    return {
      score: true,
      grammar: true,
      chat: true,
      complete: true,
      ngramPenalty: true,
      maxContext: this.parts.contextSize,
      parallel: this.pool.size,
      ...(this.vocabularySize === undefined ? {} : { vocabularySize: this.vocabularySize }),
    };
  }

  async tokenize(text: string, options: TokenizeOptions = {}): Promise<number[]> {
    this.ensureOpen();
    return options.addBos ? tokenizeWithBos(this.model, text) : this.model.tokenize(text, false);
  }

  async detokenize(tokens: number[]): Promise<string> {
    this.ensureOpen();
    // llama.cpp aborts the process on an id outside the vocabulary.
    checkTokenIds(tokens, this.vocabularySize, "tokens");
    return this.model.detokenize(tokens as Token[], false);
  }

  async countTokens(text: string): Promise<number> {
    this.ensureOpen();
    return this.model.tokenize(text, false).length;
  }

  /**
   * Complete raw-text prompts on the sequence pool; results are yielded as they finish. On abort, samples in
   * flight stop at their next token and the iterator throws AbortedError (finished results were already yielded).
   */
  async *complete(requests: CompletionRequest[], options: CompleteOptions = {}): AsyncIterable<CompletionResult> {
    this.ensureOpen();
    throwIfAborted(options.signal);
    const onText = options.onText;
    const prepared = await Promise.all(
      requests.map(async (request, index) => {
        const tokens = tokenizeWithBos(this.model, request.prompt);
        checkPromptFits(tokens, this.parts.contextSize, `request ${index}: `, refusedMaxTokens(request));
        const n = request.n ?? 1;
        if (!Number.isInteger(n) || n < 1)
          throw new ConfigError(`request ${index}: n must be a positive integer, got ${n}`, { field: "n" });
        const compiledGrammar = request.grammar ? await this.grammar(request.grammar) : undefined;
        return { request, tokens, n, compiledGrammar };
      }),
    );
    try {
      yield* runConcurrently(prepared.length, prepared.length, options.signal, async (index, signal) => {
        const { request, tokens, n, compiledGrammar } = prepared[index] as (typeof prepared)[number];
        const baseSeed = this.seedFor(request.seed);
        const samples = await Promise.all(
          Array.from({ length: n }, (_, k) =>
            this.runSample(tokens, {
              ...request,
              seed: (baseSeed + k) >>> 0,
              compiledGrammar,
              signal,
              onText: onText && ((text) => onText({ index, sample: k, text })),
            }),
          ),
        );
        // Samples cut short by an abort are not results.
        if (signal.aborted) throw new AbortedError();
        return {
          index,
          completions: samples.map(
            ({ text, finishReason, tokenCount, tokens }): Completion => ({ text, finishReason, tokenCount, tokens }),
          ),
          usage: {
            promptTokens: tokens.length,
            completionTokens: samples.reduce((sum, s) => sum + s.tokenCount, 0),
            evaluatedPromptTokens: samples.reduce((sum, s) => sum + s.evaluatedPromptTokens, 0),
          },
        };
      });
    } catch (error) {
      if (options.signal?.aborted || error instanceof AbortedError) throw new AbortedError();
      throw error;
    }
  }

  async score(prompt: string, continuations: string[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    this.ensureOpen();
    throwIfAborted(options.signal);
    const { scorer } = await this.scoringContext();
    return scorer.score(prompt, continuations, options.signal, options.topLogprobs ?? 0);
  }

  async scoreTokens(context: number[], continuations: number[][], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    this.ensureOpen();
    throwIfAborted(options.signal);
    checkTokenIds(context, this.vocabularySize, "context");
    for (const continuation of continuations) checkTokenIds(continuation, this.vocabularySize, "continuations");
    const { scorer } = await this.scoringContext();
    return scorer.scoreTokens(context as Token[], continuations as Token[][], options.signal, options.topLogprobs ?? 0);
  }

  async chat(messages: ChatMessage[], options: SamplingOptions & CompleteOptions = {}): Promise<ChatResult> {
    this.ensureOpen();
    throwIfAborted(options.signal);
    this.chatWrapper ??= chatWrapperFor(this.model);
    const { tokens, stops } = renderChat(this.model, this.chatWrapper, messages);
    checkPromptFits(tokens, this.parts.contextSize, "", refusedMaxTokens(options));
    const compiledGrammar = options.grammar ? await this.grammar(options.grammar) : undefined;
    const onText = options.onText;
    const result = await this.runSample(tokens, {
      ...options,
      onText: onText && ((text) => onText({ index: 0, sample: 0, text })),
      seed: this.seedFor(options.seed) >>> 0,
      compiledGrammar,
      extraStops: stops,
    });
    if (result.finishReason === "abort") throw new AbortedError();
    return {
      message: { role: "assistant", content: result.text.trim() },
      finishReason: result.finishReason,
      usage: {
        promptTokens: tokens.length,
        completionTokens: result.tokenCount,
        evaluatedPromptTokens: result.evaluatedPromptTokens,
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.parts.unsubscribeLogs();
    this.pool.rejectAll(new BackendError("the llama-cpp backend was closed while requests were waiting."));
    const scoring = await this.scoring?.catch(() => undefined);
    // After the last decode call (they all go through the gate), before the contexts it is attached to go.
    await this.parts.gate.run(async () => this.parts.threadpool?.release());
    await scoring?.context.dispose();
    await this.parts.context.dispose();
    await this.model.dispose();
  }

  private async runSample(tokens: Token[], options: GenerateOptions): Promise<GenerateResult> {
    const sequence = await this.pool.acquire(tokens, options.signal);
    const prompt = this.pool.startPrompt(sequence, tokens);
    try {
      await prompt.borrowed;
      if (!this.parts.reusePrefix) await sequence.clearHistory();
      return await generateOnSequence(sequence, tokens, { ...options, onPromptEvaluated: prompt.finish });
    } finally {
      prompt.finish();
      this.pool.release(sequence);
    }
  }

  /** The request's seed, else the backend's, else a random one. */
  private seedFor(seed: number | undefined): number {
    return seed ?? this.parts.seed ?? Math.floor(Math.random() * 2 ** 31);
  }

  private grammar(source: string): Promise<LlamaGrammar> {
    let grammar = this.grammars.get(source);
    if (!grammar) {
      grammar = this.parts.llama.createGrammar({ grammar: source }).catch((error: unknown) => {
        this.grammars.delete(source);
        throw new ConfigError(
          `invalid GBNF grammar: ${error instanceof Error ? error.message : String(error)}. Expected a grammar with a "root ::= ..." rule (see llama.cpp grammars/README.md).`,
          { field: "grammar", cause: error },
        );
      });
      this.grammars.set(source, grammar);
    }
    return grammar;
  }

  private scoringContext(): Promise<{ context: LlamaContext; scorer: BatchScorer; tuning: NativeBatchTuning }> {
    this.scoring ??= (async () => {
      const sequences = this.parts.scoreSequences;
      const context = await this.model.createContext({
        contextSize: this.parts.contextSize,
        sequences,
        ...exactContextOptions,
        threads: Math.max(this.parts.threads === "auto" ? 1 : this.parts.threads, this.parts.batchThreads),
        lora: this.parts.lora,
      });
      const tuning = tuneNativeBatches(context, {
        decodeThreads: this.parts.threads,
        batchThreads: this.parts.batchThreads,
        gate: this.parts.gate,
        pool: this.parts.threadpool,
      });
      const scorer = new BatchScorer(Array.from({ length: sequences }, () => context.getSequence()));
      return { context, scorer, tuning };
    })();
    return this.scoring;
  }

  private ensureOpen(): void {
    if (this.closed)
      throw new BackendError("the llama-cpp backend is closed: create a new one with createLlamaCppBackend().");
  }
}
