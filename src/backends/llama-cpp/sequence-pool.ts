import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { AbortedError } from "../../errors/index.js";

/** Length of the longest common prefix of two token arrays. */
export function commonPrefixLength(a: readonly Token[], b: readonly Token[]): number {
  const limit = Math.min(a.length, b.length);
  let i = 0;
  while (i < limit && a[i] === b[i]) i++;
  return i;
}

/** Prefixes shorter than this are evaluated rather than copied from another sequence. */
const minSharedPrefix = 32;

interface PromptState {
  tokens: readonly Token[];
  done: Promise<void>;
  finish: () => void;
}

type CopyableSequence = LlamaContextSequence & {
  _copyStateFromOtherSequence?: (other: LlamaContextSequence, upToTokenIndex: number) => Promise<boolean>;
};

interface Waiter {
  tokens: readonly Token[];
  resolve: (sequence: LlamaContextSequence) => void;
  reject: (error: Error) => void;
}

/**
 * A pool of context sequences that routes each request to the free sequence whose cached tokens share the
 * longest prefix with it, and, when a sequence frees up, hands it to the waiting request (among the first
 * `lookahead`, to bound the cost) that shares the longest prefix with its cache. With N prompts sharing a long
 * prefix, each sequence evaluates that prefix once and every later prompt only its own suffix.
 */
export class SequencePool {
  private readonly idle: LlamaContextSequence[];
  private readonly waiters: Waiter[] = [];
  private readonly evaluating = new Map<LlamaContextSequence, PromptState>();

  constructor(
    readonly sequences: readonly LlamaContextSequence[],
    /** Copy a shared prefix's KV cache from another sequence instead of evaluating it again. */
    private readonly sharePrefix = true,
    private readonly lookahead = 64,
  ) {
    this.idle = [...sequences];
  }

  get size(): number {
    return this.sequences.length;
  }

  acquire(tokens: readonly Token[], signal?: AbortSignal): Promise<LlamaContextSequence> {
    if (signal?.aborted) return Promise.reject(new AbortedError());
    if (this.idle.length > 0) {
      let best = 0;
      let bestLength = -1;
      this.idle.forEach((sequence, i) => {
        const length = commonPrefixLength(sequence.contextTokens, tokens);
        if (length > bestLength) {
          best = i;
          bestLength = length;
        }
      });
      return Promise.resolve(this.idle.splice(best, 1)[0] as LlamaContextSequence);
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) {
          this.waiters.splice(index, 1);
          reject(new AbortedError());
        }
      };
      const waiter: Waiter = {
        tokens,
        resolve: (sequence) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(sequence);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      this.waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  release(sequence: LlamaContextSequence): void {
    if (this.waiters.length === 0) {
      this.idle.push(sequence);
      return;
    }
    const cached = sequence.contextTokens;
    let best = 0;
    let bestLength = -1;
    const limit = Math.min(this.waiters.length, this.lookahead);
    for (let i = 0; i < limit; i++) {
      const length = commonPrefixLength(cached, (this.waiters[i] as Waiter).tokens);
      if (length > bestLength) {
        best = i;
        bestLength = length;
      }
    }
    const [waiter] = this.waiters.splice(best, 1);
    waiter?.resolve(sequence);
  }

  /**
   * Register that `sequence` is about to evaluate `tokens` and, if another sequence holds (or is evaluating) a
   * longer prefix of them, wait for that prefix and copy its KV cache (llama_memory_seq_cp, milliseconds) instead
   * of evaluating it. So N parallel prompts with one long shared prefix evaluate it once, not once per sequence.
   * Registration is synchronous so that prompts started together find each other. Call `finish` once the prompt
   * is in the KV cache. This uses node-llama-cpp's internal `_copyStateFromOtherSequence` (what its
   * LlamaDecisionContext uses); where it is missing or the copy fails, the sequence evaluates the prompt itself.
   */
  startPrompt(
    sequence: LlamaContextSequence,
    tokens: readonly Token[],
  ): { borrowed: Promise<void>; finish: () => void } {
    let source: LlamaContextSequence | undefined;
    let sourceLength = 0;
    const copy = (sequence as CopyableSequence)._copyStateFromOtherSequence;
    const own = commonPrefixLength(sequence.contextTokens, tokens);
    if (this.sharePrefix && typeof copy === "function") {
      sourceLength = own + minSharedPrefix - 1;
      for (const other of this.sequences) {
        if (other === sequence) continue;
        const pending = this.evaluating.get(other);
        const length = commonPrefixLength(pending ? pending.tokens : other.contextTokens, tokens);
        if (length > sourceLength) {
          source = other;
          sourceLength = length;
        }
      }
    }
    const sourceDone = source ? this.evaluating.get(source)?.done : undefined;
    let finish: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const state: PromptState = { tokens, done, finish };
    this.evaluating.set(sequence, state);
    const borrowed = (async () => {
      if (!source || typeof copy !== "function") return;
      await sourceDone;
      const available = Math.min(commonPrefixLength(source.contextTokens, tokens), tokens.length - 1);
      if (available < own + minSharedPrefix) return;
      const copied = await copy.call(sequence, source, available).catch(() => false);
      if (!copied) await sequence.clearHistory();
    })();
    return {
      borrowed,
      finish: () => {
        if (this.evaluating.get(sequence) === state) this.evaluating.delete(sequence);
        finish();
      },
    };
  }

  /** Reject every waiting request (on close). */
  rejectAll(error: Error): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }
}
