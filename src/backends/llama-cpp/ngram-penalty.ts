import type { NgramPenalty } from "../language-model.js";

/**
 * Dromedary's n-gram frequency penalties (method-spec A.1): for n = 1..4, count every n-gram generated so far
 * (the prompt is excluded); at each step, for each counted n-gram whose first n-1 tokens equal the last n-1
 * generated tokens, subtract `penalty * count` from the logit of its last token. The original applies it only to
 * word-initial SentencePiece pieces with id > 1024 (`frequency_penalty_starts_only`); that filter is specific to
 * the LLaMA-1 vocabulary and is not reproduced here: the penalty applies to every token.
 */
export class NgramPenaltyTracker {
  private readonly generated: number[] = [];
  /** Per penalty: (n-1)-gram context key -> next token -> count. */
  private readonly counts: Array<Map<string, Map<number, number>>>;

  constructor(private readonly penalties: readonly NgramPenalty[]) {
    for (const { n } of penalties)
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`n-gram penalty n must be an integer >= 1, got ${n}`);
    this.counts = penalties.map(() => new Map());
  }

  get active(): boolean {
    return this.penalties.some((p) => p.penalty !== 0);
  }

  /** Record a generated token. */
  push(token: number): void {
    this.generated.push(token);
    const length = this.generated.length;
    this.penalties.forEach(({ n }, i) => {
      if (length < n) return;
      const key = this.generated.slice(length - n, length - 1).join(",");
      const table = this.counts[i] as Map<string, Map<number, number>>;
      let next = table.get(key);
      if (!next) {
        next = new Map();
        table.set(key, next);
      }
      next.set(token, (next.get(token) ?? 0) + 1);
    });
  }

  /** Logit adjustments (token -> negative delta) for the next step, added into `into`. */
  addPenalties(into: Map<number, number>): Map<number, number> {
    const length = this.generated.length;
    this.penalties.forEach(({ n, penalty }, i) => {
      if (penalty === 0 || length < n - 1) return;
      const key = this.generated.slice(length - (n - 1), length).join(",");
      const next = this.counts[i]?.get(key);
      if (!next) return;
      for (const [token, count] of next) into.set(token, (into.get(token) ?? 0) - penalty * count);
    });
    return into;
  }
}
