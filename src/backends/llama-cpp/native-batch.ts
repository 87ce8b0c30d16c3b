import type {
  BatchItem,
  CustomBatchingPrioritizationStrategy,
  LlamaContext,
  PrioritizedBatchItem,
} from "node-llama-cpp";
import { ThreadChooser } from "./thread-chooser.js";

/**
 * How node-llama-cpp's batches reach llama.cpp, tuned for parallel decoding on a CPU.
 *
 * With several sequences, llama.cpp keeps one KV stream per sequence and splits a batch into micro-batches of
 * sequences whose ids increase by one in batch order (`llama_batch_allocr::split_equal(..., sequential=true)`).
 * node-llama-cpp adds sequences to a batch in the order their previous token was sampled, which is close to random,
 * so a 16-sequence decode step ran as about six micro-batches, each re-reading every weight: parallel decoding was
 * hardly faster than one sequence. Two fixes, measured on a 19M-parameter model (bench/parallel): entries are added in
 * sequence-id order, and a decode step waits a few microtask turns for sequences whose sampled token is still on its
 * way (otherwise one sequence misses every step and splits the rest in two). Together: one micro-batch per step and
 * about twice the aggregate tokens/s at 16 sequences.
 *
 * The thread count is also chosen per batch: long prompt evaluation gets `batchThreads`; small decode batches get
 * `decodeThreads`, or, with "auto", `batchThreads` on a persistent threadpool, else what a ThreadChooser measured to be
 * fastest for their size on this machine (without a pool, each multi-threaded call starts its threads anew).
 */

/** Batches with at least this many tokens count as prompt evaluation and get `batchThreads`. */
const promptBatchThreshold = 64;

/** Microtask turns a decode step waits without new arrivals before it starts with the sequences it has. */
const quietTurns = 3;
/** Upper bound on the turns one step waits, so a sequence that never arrives cannot stall the others. */
const maxTurns = 16;

interface NativeContext {
  initBatch(size: number): unknown;
  addToBatch(
    sequenceId: number,
    firstTokenIndex: number,
    tokens: Uint32Array,
    logitIndexes: Uint32Array,
  ): Uint32Array | undefined;
  setThreads(threads: number): unknown;
  decodeBatch(): Promise<unknown>;
}

const nativeMethods = ["initBatch", "addToBatch", "setThreads", "decodeBatch"] as const;

/** What a tuned context has decoded since it was tuned: native decode calls and the tokens in them. */
export interface NativeBatchStats {
  decodeCalls: number;
  decodedTokens: number;
  /** Milliseconds spent in the native decode calls (the rest of a run's time is sampling, scheduling and waiting). */
  decodeMilliseconds: number;
  /** Decode calls by the number of tokens in them. */
  callsBySize: Record<number, number>;
  /** Decode calls whose entries were added out of sequence-id order by node-llama-cpp and were reordered. */
  reorderedCalls: number;
  /** With automatic decode threads: the thread count chosen per batch size class (keyed by its smallest size). */
  threadChoices: Record<number, number>;
}

/**
 * Runs the decode calls of several contexts one at a time. Each call uses all the threads it was given, so two
 * contexts of one engine (generation and scoring) decoding at once would only share the cores and get in each
 * other's way.
 */
export class DecodeGate {
  private last: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.last.then(work, work);
    this.last = result.catch(() => undefined);
    return result;
  }
}

export interface NativeBatchThreads {
  /** Threads for decode batches (fewer than 64 tokens); "auto" measures 1 against `batchThreads` per batch size. */
  decodeThreads: number | "auto";
  /** Threads for prompt evaluation (64 tokens and more). */
  batchThreads: number;
  /** Shared with the engine's other contexts, so that their decode calls do not overlap. */
  gate?: DecodeGate;
  /**
   * The engine's persistent threadpool (persistent-threads.ts), shared through `gate`: attached once the context is
   * wrapped, so that only gated decodes run on it. On a pool a multi-threaded call costs no thread start-up, more
   * threads pay at every batch size, and "auto" decode threads are simply `batchThreads`.
   */
  pool?: { attach(context: LlamaContext): boolean };
}

export interface NativeBatchTuning {
  /** False when node-llama-cpp's internals were not as expected: the context then batches as node-llama-cpp does. */
  active: boolean;
  /** The context decodes on `pool`. */
  pooled: boolean;
  stats(): NativeBatchStats;
}

/** Stats of a context nothing was decoded on yet. */
export function emptyBatchStats(): NativeBatchStats {
  return {
    decodeCalls: 0,
    decodedTokens: 0,
    decodeMilliseconds: 0,
    callsBySize: {},
    reorderedCalls: 0,
    threadChoices: {},
  };
}

interface PendingEntry {
  sequenceId: number;
  firstTokenIndex: number;
  tokens: Uint32Array;
  logitIndexes: Uint32Array;
  /** Returned to node-llama-cpp at once and filled with the entry's batch positions before the decode runs. */
  batchLogitIndexes: Uint32Array;
}

/** Whether `tuneNativeBatches` can wrap this context (node-llama-cpp's internals are as expected). */
function canTuneNativeBatches(context: LlamaContext): boolean {
  const native = (context as unknown as { _ctx?: Partial<NativeContext> })._ctx;
  return native !== undefined && nativeMethods.every((name) => typeof native[name] === "function");
}

/**
 * Wrap the (internal) native context of `context` so that each batch is added to llama.cpp in sequence-id order and
 * decoded with `decodeThreads` (small batches) or `batchThreads` (prompt evaluation). If the internals are not as
 * expected, nothing is changed and `active` is false.
 */
export function tuneNativeBatches(context: LlamaContext, threadOptions: NativeBatchThreads): NativeBatchTuning {
  const { decodeThreads, batchThreads } = threadOptions;
  // Set once the wrapping succeeded and the pool (if any) was attached.
  let chooser: ThreadChooser | undefined;
  let fixedDecodeThreads = decodeThreads === "auto" ? 1 : decodeThreads;
  const stats: Omit<NativeBatchStats, "threadChoices"> = emptyBatchStats();
  const snapshot = (): NativeBatchStats => ({
    ...stats,
    callsBySize: { ...stats.callsBySize },
    threadChoices: chooser?.choices() ?? {},
  });
  if (!canTuneNativeBatches(context)) return { active: false, pooled: false, stats: snapshot };
  const native = (context as unknown as { _ctx: NativeContext })._ctx;
  const original = native;
  const initBatch = original.initBatch.bind(native);
  const addToBatch = original.addToBatch.bind(native);
  const setThreads = original.setThreads.bind(native);
  const decodeBatch = original.decodeBatch.bind(native);

  let capacity = 0;
  let pending: PendingEntry[] = [];
  let pendingTokens = 0;
  let currentThreads = -1;
  let callsSinceSwitch = 0;
  // The addon's methods are read-only inherited properties: shadow them with own properties on this instance.
  const define = (name: keyof NativeContext, value: unknown) =>
    Object.defineProperty(native, name, { value, configurable: true, writable: true });
  try {
    define("initBatch", (size: number) => {
      const result = initBatch(size);
      capacity = size;
      pending = [];
      pendingTokens = 0;
      return result;
    });
    define(
      "addToBatch",
      (sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array) => {
        // The same check the addon makes, made now because the entry is only added when the batch is decoded.
        if (tokens.length > capacity - pendingTokens) throw new RangeError("Tokens exceed the initialized batch size");
        const batchLogitIndexes = new Uint32Array(logitIndexes.length);
        pending.push({ sequenceId, firstTokenIndex, tokens, logitIndexes, batchLogitIndexes });
        pendingTokens += tokens.length;
        return batchLogitIndexes;
      },
    );
    define("setThreads", () => undefined);
    define("decodeBatch", () => {
      const entries = pending;
      pending = [];
      const ordered = [...entries].sort((a, b) => a.sequenceId - b.sequenceId);
      if (ordered.some((entry, i) => entry !== entries[i])) stats.reorderedCalls++;
      for (const entry of ordered) {
        const positions = addToBatch(entry.sequenceId, entry.firstTokenIndex, entry.tokens, entry.logitIndexes);
        if (positions) entry.batchLogitIndexes.set(positions);
      }
      const tokens = pendingTokens;
      pendingTokens = 0;
      const measuring = chooser;
      const measured = measuring !== undefined && tokens < promptBatchThreshold;
      const threads =
        tokens >= promptBatchThreshold ? batchThreads : measured ? measuring.choose(tokens) : fixedDecodeThreads;
      if (threads !== currentThreads) {
        setThreads(threads);
        currentThreads = threads;
        callsSinceSwitch = 0;
      }
      const settled = callsSinceSwitch++;
      stats.decodeCalls++;
      stats.decodedTokens += tokens;
      stats.callsBySize[tokens] = (stats.callsBySize[tokens] ?? 0) + 1;
      const decode = async () => {
        const start = performance.now();
        const result = await decodeBatch();
        const elapsed = performance.now() - start;
        stats.decodeMilliseconds += elapsed;
        if (measured) measuring.record(tokens, threads, elapsed, settled);
        return result;
      };
      return threadOptions.gate ? threadOptions.gate.run(decode) : decode();
    });
  } catch {
    for (const name of nativeMethods) delete (native as unknown as Record<string, unknown>)[name];
    return { active: false, pooled: false, stats: snapshot };
  }
  const pooled = threadOptions.pool?.attach(context) ?? false;
  if (decodeThreads === "auto") {
    if (pooled) fixedDecodeThreads = batchThreads;
    else if (batchThreads > 1) chooser = new ThreadChooser([1, batchThreads]);
  }
  return { active: true, pooled, stats: snapshot };
}

/**
 * A node-llama-cpp batch prioritization strategy that lets sequences catch up before a decode step, then shares the
 * batch among the queued items like node-llama-cpp's "maximumParallelism" (an equal share each, the rest in order).
 *
 * After a decode step, each sequence samples its next token and queues it a few microtask turns later; the step
 * loop looks at the queue sooner, so without waiting one sequence misses every step. Returning no items makes
 * node-llama-cpp look again at once (a microtask turn, no timer): the step starts once the queue has not grown for
 * `quietTurns` looks, or after `maxTurns`.
 */
export function gatherSequencesStrategy(): CustomBatchingPrioritizationStrategy {
  let turns = 0;
  let quiet = 0;
  let seen = -1;
  return ({ items, size }) => {
    if (items.length > seen) quiet = 0;
    else quiet++;
    seen = items.length;
    if (quiet < quietTurns && turns < maxTurns) {
      turns++;
      return [];
    }
    turns = 0;
    quiet = 0;
    seen = -1;
    return shareBatch(items, size);
  };
}

/** Give each item an equal share of `size` tokens (at least one), then hand what is left to items in order. */
export function shareBatch(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  const share = Math.max(1, Math.floor(size / Math.max(1, items.length)));
  let left = size;
  const result = items.map((item) => {
    const processAmount = Math.min(item.tokens.length, share, left);
    left -= processAmount;
    return { item, processAmount };
  });
  for (const entry of result) {
    const more = Math.min(entry.item.tokens.length - entry.processAmount, left);
    entry.processAmount += more;
    left -= more;
  }
  return result.filter((entry) => entry.processAmount > 0);
}
