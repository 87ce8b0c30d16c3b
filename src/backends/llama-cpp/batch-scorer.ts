import type { ControlledEvaluateInputItem, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { AbortedError, BackendError } from "../../errors/index.js";
import type { ScoreResult } from "../language-model.js";
import { alignContinuation, tokenizeWithBos } from "./scorer.js";
import { commonPrefixLength } from "./sequence-pool.js";

/**
 * Exact log-probabilities at batch speed, on the sequences of a dedicated scoring context (flash attention off, F32
 * KV cache).
 *
 * Every continuation of every `score` call waiting at the same moment becomes an item: its tokens and the first
 * position whose next-token distribution it needs. Items that need the same tokens in the KV cache (the continuations
 * of one prompt that differ only in their last token, such as the option letters of a multiple-choice or judge
 * prompt) share one evaluation, whose logits are filtered to all their targets. Evaluations are decoded in waves of up
 * to one per sequence, the oldest waiting one with those that share the longest prefix with it. A wave's shared prefix
 * is evaluated once, on the sequence that already holds most of it, and its KV cache is copied to the wave's other
 * sequences (llama_memory_seq_cp, milliseconds); then every evaluation evaluates what is its own, all in the same
 * decode calls. A prefix whose next-token distributions some item needs (echo scoring scores every token) is read from
 * that one evaluation for all of them. With one sequence this is what scoring always did: one evaluation at a time,
 * each reusing the prefix its predecessor left in the KV cache.
 *
 * log p(t) = logit(t) - max logit - log(sum exp(logit - max)), from controlledEvaluate's filtered logits
 * (`includeTop: 1` gives the max; `includeMax` is broken in node-llama-cpp 3.22.1) and `totalLogitWeight`.
 */

/** Prefixes shorter than this are evaluated on each sequence rather than copied (a copy moves the whole KV stream). */
const minCopiedPrefix = 32;

/** The next-token distribution at one position, as controlledEvaluate gives it. */
interface Distribution {
  logits: ReadonlyMap<Token, number>;
  total: number;
}

interface Item {
  request: Request;
  /** Index of the continuation in its request. */
  index: number;
  whole: Token[];
  condition: number;
  /** First position whose distribution is needed (the last condition token). */
  need: number;
  /** Distributions by position, from `need` to whole.length - 2, filled as waves evaluate them. */
  distributions: Array<Distribution | undefined>;
}

/** An evaluation of a wave, on its sequence, which holds its first `own` tokens. */
interface Placed {
  evaluation: Evaluation;
  sequence: LlamaContextSequence;
  own: number;
}

/** Items that need the same tokens in the KV cache, evaluated together. */
interface Evaluation {
  /** What the KV cache must hold: every item's tokens but its last. */
  tokens: Token[];
  /** The smallest `need` of its items. */
  need: number;
  items: Item[];
}

interface Request {
  items: Item[];
  topLogprobs: number;
  results: ScoreResult[];
  signal?: AbortSignal;
  remaining: number;
  resolve: (results: ScoreResult[]) => void;
  reject: (error: unknown) => void;
  settled: boolean;
}

type CopyableSequence = LlamaContextSequence & {
  _copyStateFromOtherSequence?: (other: LlamaContextSequence, upToTokenIndex: number) => Promise<boolean>;
};

export class BatchScorer {
  private readonly model: LlamaModel;
  private readonly contextSize: number;
  private pending: Evaluation[] = [];
  /** The pending evaluations by their tokens, so that an item joins one that needs the same cache. */
  private pendingByTokens = new Map<string, Evaluation>();
  private draining = false;

  constructor(private readonly sequences: readonly LlamaContextSequence[]) {
    const first = sequences[0];
    if (!first) throw new BackendError("a BatchScorer needs at least one sequence");
    this.model = first.model;
    this.contextSize = first.contextSize;
  }

  /** Log-probabilities of each continuation given the prompt (see ScoreResult); calls made together share decodes. */
  score(
    prompt: string,
    continuations: readonly string[],
    signal?: AbortSignal,
    topLogprobs = 0,
  ): Promise<ScoreResult[]> {
    if (signal?.aborted) return Promise.reject(new AbortedError());
    let pairs: Array<{ condition: Token[]; continuation: Token[] }>;
    try {
      const context = tokenizeWithBos(this.model, prompt);
      pairs = continuations.map((text) => alignContinuation(this.model, prompt, text, context));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.submit(pairs, signal, topLogprobs);
  }

  /**
   * Log-probabilities of token-id continuations after the token ids `condition`, with no tokenisation: what a server
   * reports for the tokens it generated (text that is not valid UTF-8 would not survive a round trip).
   */
  scoreTokens(
    condition: readonly Token[],
    continuations: readonly (readonly Token[])[],
    signal?: AbortSignal,
    topLogprobs = 0,
  ): Promise<ScoreResult[]> {
    if (signal?.aborted) return Promise.reject(new AbortedError());
    return this.submit(
      continuations.map((continuation) => ({ condition: [...condition], continuation: [...continuation] })),
      signal,
      topLogprobs,
    );
  }

  private submit(
    pairs: ReadonlyArray<{ condition: Token[]; continuation: Token[] }>,
    signal: AbortSignal | undefined,
    topLogprobs: number,
  ): Promise<ScoreResult[]> {
    return new Promise((resolve, reject) => {
      const request: Request = {
        items: [],
        topLogprobs,
        results: new Array(pairs.length),
        signal,
        remaining: 0,
        resolve,
        reject,
        settled: false,
      };
      try {
        pairs.forEach(({ condition, continuation }, index) => {
          if (continuation.length === 0) {
            request.results[index] = { logprob: 0, tokens: [], isGreedy: true };
            return;
          }
          if (condition.length === 0)
            throw new BackendError(
              "cannot score from an empty prompt on a model without a BOS token: expected at least one token to condition on. Give a non-empty prompt.",
            );
          const whole = [...condition, ...continuation];
          if (whole.length > this.contextSize)
            throw new BackendError(
              `prompt + continuation has ${whole.length} tokens but the scoring context holds ${this.contextSize}: expected fewer. Shorten the prompt or raise contextSize.`,
            );
          request.items.push({
            request,
            index,
            whole,
            condition: condition.length,
            need: condition.length - 1,
            distributions: new Array(continuation.length),
          });
        });
      } catch (error) {
        reject(error);
        return;
      }
      request.remaining = request.items.length;
      if (request.remaining === 0) {
        resolve(request.results);
        return;
      }
      for (const item of request.items) this.enqueue(item);
      if (!this.draining) {
        this.draining = true;
        // Let the calls made in this turn of the event loop join the first wave.
        setImmediate(() => void this.drain());
      }
    });
  }

  /** Add `item` to the pending evaluation that needs the same tokens in the cache, or to a new one. */
  private enqueue(item: Item): void {
    const tokens = item.whole.slice(0, -1);
    const key = tokens.join(",");
    const evaluation = this.pendingByTokens.get(key);
    if (evaluation) {
      evaluation.items.push(item);
      evaluation.need = Math.min(evaluation.need, item.need);
      return;
    }
    const created: Evaluation = { tokens, need: item.need, items: [item] };
    this.pendingByTokens.set(key, created);
    this.pending.push(created);
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        this.pending = this.pending.filter((evaluation) => {
          evaluation.items = evaluation.items.filter((item) => this.stillWanted(item.request));
          if (evaluation.items.length === 0) this.pendingByTokens.delete(evaluation.tokens.join(","));
          return evaluation.items.length > 0;
        });
        const wave = this.nextWave();
        if (wave.length === 0) return;
        const items = wave.flatMap((evaluation) => evaluation.items);
        try {
          await this.evaluateWave(wave);
        } catch (error) {
          for (const item of items) this.fail(item.request, error);
          continue;
        }
        for (const item of items) this.finishItem(item);
      }
    } finally {
      this.draining = false;
    }
  }

  /** False (and the request rejected) once its signal has aborted or it failed. */
  private stillWanted(request: Request): boolean {
    if (request.settled) return false;
    if (request.signal?.aborted) {
      this.fail(request, new AbortedError());
      return false;
    }
    return true;
  }

  private fail(request: Request, error: unknown): void {
    if (request.settled) return;
    request.settled = true;
    request.reject(error);
  }

  /** The oldest waiting evaluation and those that share the longest prefix with it, one per sequence. */
  private nextWave(): Evaluation[] {
    const oldest = this.pending[0];
    if (!oldest) return [];
    const ranked = this.pending
      .map((evaluation, order) => ({ evaluation, order, shared: commonPrefixLength(evaluation.tokens, oldest.tokens) }))
      .sort((a, b) => b.shared - a.shared || a.order - b.order)
      .slice(0, this.sequences.length)
      .map((entry) => entry.evaluation);
    const taken = new Set(ranked);
    this.pending = this.pending.filter((evaluation) => !taken.has(evaluation));
    for (const evaluation of ranked) this.pendingByTokens.delete(evaluation.tokens.join(","));
    return ranked;
  }

  private async evaluateWave(wave: Evaluation[]): Promise<void> {
    // Each evaluation gets the free sequence whose cache shares the longest prefix with it.
    const free = [...this.sequences];
    const placed = wave.map((evaluation): Placed => {
      let best = 0;
      let bestLength = -1;
      free.forEach((sequence, i) => {
        const length = commonPrefixLength(sequence.contextTokens, evaluation.tokens);
        if (length > bestLength) {
          best = i;
          bestLength = length;
        }
      });
      const [sequence] = free.splice(best, 1) as [LlamaContextSequence];
      return { evaluation, sequence, own: bestLength };
    });
    const top = Math.max(1, ...wave.flatMap((evaluation) => evaluation.items.map((item) => item.request.topLogprobs)));
    await this.evaluateGroup(placed, 0, top);
  }

  /**
   * Evaluate a group of placed evaluations that share their first `depth` tokens, whose distributions are already
   * read: the longest prefix they all share beyond that is evaluated once, on the sequence that holds most of it, and
   * copied to the others' sequences; then the group splits by the next token and each part goes on the same way, all
   * parts at once (so their decodes are batched together). Each distinct prefix of the wave is evaluated once, except
   * shared stretches under `minCopiedPrefix` tokens, which each part evaluates itself rather than wait a decode call.
   */
  private async evaluateGroup(group: Placed[], depth: number, top: number): Promise<void> {
    const items = group.flatMap((entry) => entry.evaluation.items);
    const first = (group[0] as Placed).evaluation.tokens;
    let shared = first.length;
    for (const entry of group) shared = Math.min(shared, commonPrefixLength(entry.evaluation.tokens, first));
    const needFrom = Math.max(depth, Math.min(...group.map((entry) => entry.evaluation.need)));
    if (group.length === 1) {
      const [entry] = group as [Placed];
      const { tokens } = entry.evaluation;
      if (needFrom >= tokens.length) return;
      const keep = Math.min(entry.own, needFrom);
      const evaluated = await this.evaluate(entry.sequence, tokens, keep, tokens.length, needFrom, items, top);
      for (const item of items)
        for (let p = Math.max(needFrom, item.need); p < item.whole.length - 1; p++)
          item.distributions[p - item.need] = evaluated.get(p);
      entry.own = tokens.length;
      return;
    }
    // A shared stretch shorter than a copy is worth is evaluated by each part itself, in the same decode calls.
    const evaluatedTo = shared - depth >= minCopiedPrefix ? shared : depth;
    if (evaluatedTo > depth) {
      const lead = group.reduce((a, b) => (b.own > a.own ? b : a));
      const keep = Math.min(lead.own, shared, needFrom);
      // Nothing to evaluate when the lead holds the prefix and no item needs a distribution inside it.
      if (keep < shared) {
        const evaluated = await this.evaluate(
          lead.sequence,
          lead.evaluation.tokens,
          keep,
          shared,
          needFrom,
          items,
          top,
        );
        for (let p = needFrom; p < shared; p++) {
          const distribution = evaluated.get(p);
          for (const item of items) if (p >= item.need) item.distributions[p - item.need] = distribution;
        }
        lead.own = shared;
      }
      // The others take the prefix from the lead's KV cache when that saves evaluating enough of it.
      await Promise.all(
        group.map(async (entry) => {
          if (entry === lead || shared - entry.own < minCopiedPrefix) return;
          const copy = (entry.sequence as CopyableSequence)._copyStateFromOtherSequence;
          if (typeof copy !== "function") return;
          const copied = await copy.call(entry.sequence, lead.sequence, shared).catch(() => false);
          if (!copied) await entry.sequence.clearHistory();
          entry.own = commonPrefixLength(entry.sequence.contextTokens, entry.evaluation.tokens);
        }),
      );
    }
    // Split by the token after the shared prefix. An evaluation that ends there is done if the prefix was evaluated,
    // else it goes on alone.
    const parts = new Map<Token | Placed, Placed[]>();
    for (const entry of group) {
      const next = entry.evaluation.tokens[shared];
      if (next === undefined) {
        if (evaluatedTo < shared) parts.set(entry, [entry]);
        continue;
      }
      parts.set(next, [...(parts.get(next) ?? []), entry]);
    }
    await Promise.all([...parts.values()].map((part) => this.evaluateGroup(part, evaluatedTo, top)));
  }

  /**
   * Bring `sequence` to hold tokens[0:end], evaluating from `keep` (what it holds beyond is erased), with the
   * next-token distribution read at each position from `logitsFrom` on, filtered to the top `top` tokens and the
   * targets there of `items`. Returns the distributions by position.
   */
  private async evaluate(
    sequence: LlamaContextSequence,
    tokens: readonly Token[],
    keep: number,
    end: number,
    logitsFrom: number,
    items: readonly Item[],
    top: number,
  ): Promise<Map<number, Distribution>> {
    if (keep < sequence.nextTokenIndex)
      await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
    const input: ControlledEvaluateInputItem[] = [];
    for (let p = keep; p < end; p++) {
      const token = tokens[p] as Token;
      if (p < logitsFrom) input.push(token);
      else
        input.push([
          token,
          {
            generateNext: {
              logits: { filter: { tokens: targetsAt(items, p), includeTop: top } },
              totalLogitWeight: true,
            },
          },
        ]);
    }
    const distributions = new Map<number, Distribution>();
    if (input.length === 0) return distributions;
    const evaluated = await sequence.controlledEvaluate(input);
    for (let p = Math.max(keep, logitsFrom); p < end; p++) {
      const next = evaluated[p - keep]?.next;
      if (next?.logits && next.totalLogitWeight !== undefined)
        distributions.set(p, { logits: next.logits, total: next.totalLogitWeight });
    }
    return distributions;
  }

  private finishItem(item: Item): void {
    const request = item.request;
    if (request.settled) return;
    try {
      request.results[item.index] = scoredTokens(this.model, item, request.topLogprobs);
    } catch (error) {
      this.fail(request, error);
      return;
    }
    if (--request.remaining === 0) {
      request.settled = true;
      request.resolve(request.results);
    }
  }
}

/**
 * Scoring sequences that fit in `budgetBytes` of F32 KV cache at `contextSize` tokens each (at least 1, at most
 * `most`), from the model's GGUF metadata; `most` when the metadata does not say.
 */
export function scoringSequencesFor(model: LlamaModel, contextSize: number, most = 8, budgetBytes = 2 ** 30): number {
  const metadata = model.fileInfo.metadata as Record<string, unknown> & { general?: { architecture?: string } };
  const architecture = metadata.general?.architecture;
  const fields = (architecture ? metadata[architecture] : undefined) as
    | { block_count?: number; embedding_length?: number; attention?: { head_count?: number; head_count_kv?: number } }
    | undefined;
  const layers = fields?.block_count;
  const width = fields?.embedding_length;
  const heads = fields?.attention?.head_count;
  const kvHeads = fields?.attention?.head_count_kv ?? heads;
  if (!layers || !width || !heads || !kvHeads) return most;
  const bytesPerSequence = 2 * layers * (width / heads) * kvHeads * 4 * contextSize;
  return Math.max(1, Math.min(most, Math.floor(budgetBytes / bytesPerSequence)));
}

/** The tokens that `items` need the probability of after position `p`. */
function targetsAt(items: readonly Item[], p: number): Token[] {
  const targets = new Set<Token>();
  for (const item of items) if (p >= item.need && p + 1 < item.whole.length) targets.add(item.whole[p + 1] as Token);
  return [...targets];
}

/** The ScoreResult of an item whose distributions are all in. */
function scoredTokens(model: LlamaModel, item: Item, topLogprobs: number): ScoreResult {
  const tokens: ScoreResult["tokens"] = [];
  let isGreedy = true;
  let logprob = 0;
  for (let j = 0; j < item.whole.length - item.condition; j++) {
    const position = item.condition + j;
    const target = item.whole[position] as Token;
    const distribution = item.distributions[j];
    const logit = distribution?.logits.get(target);
    if (!distribution || logit === undefined)
      throw new BackendError(
        `llama.cpp returned no logits for continuation token ${j} (expected filtered logits and totalLogitWeight from controlledEvaluate).`,
      );
    let max = Number.NEGATIVE_INFINITY;
    for (const value of distribution.logits.values()) if (value > max) max = value;
    const value = logit - max - Math.log(distribution.total);
    if (logit < max) isGreedy = false;
    logprob += value;
    const before = item.whole.slice(Math.max(0, position - 8), position);
    const scored: ScoreResult["tokens"][number] = {
      token: target,
      text: model.detokenize([target], false, before),
      logprob: value,
    };
    if (topLogprobs > 0)
      // The filter returns the top k plus the target; when the target is not among the top k it ranks below them.
      scored.top = [...distribution.logits.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, topLogprobs)
        .map(([token, tokenLogit]) => ({
          token,
          text: model.detokenize([token], false, before),
          logprob: tokenLogit - max - Math.log(distribution.total),
        }));
    tokens.push(scored);
  }
  return { logprob, tokens, isGreedy };
}
