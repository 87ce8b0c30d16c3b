import { createHash } from "node:crypto";

/**
 * The documented tie-break of every arg-max in evaluation (method-spec A.8). Exact float equality counts as a tie;
 * NaN counts as -Infinity. Among the tied indices (ascending), pick number `sha256(scores) mod #ties`, where the
 * hash is over the scores as little-endian float64 bytes, read as one big-endian unsigned integer. Deterministic,
 * independent of candidate order conventions (TruthfulQA's correct MC1 answer always comes first, so "first wins"
 * would favour it), and the same scores always give the same choice.
 */
export const tieBreakRule =
  "argmax over scores; exact ties are broken by sha256(scores as little-endian float64 bytes), read as a big-endian " +
  "integer, mod the number of tied candidates, indexing the tied candidates in ascending order";

export interface ArgmaxResult {
  /** The chosen index. */
  index: number;
  /** Indices sharing the maximum score (length 1 when there is no tie). */
  tied: number[];
}

/** Arg-max with the sha256 tie-break of {@link tieBreakRule}. Throws on an empty array. */
export function argmaxWithTieBreak(scores: readonly number[]): ArgmaxResult {
  if (scores.length === 0) throw new Error("argmax of no scores");
  const values = scores.map((score) => (Number.isNaN(score) ? Number.NEGATIVE_INFINITY : score));
  const best = Math.max(...values);
  const tied = values.flatMap((value, index) => (value === best ? [index] : []));
  if (tied.length === 1) return { index: tied[0]!, tied };
  const bytes = Buffer.alloc(8 * scores.length);
  scores.forEach((score, index) => {
    bytes.writeDoubleLE(score, 8 * index);
  });
  const digest = createHash("sha256").update(bytes).digest("hex");
  const pick = Number(BigInt(`0x${digest}`) % BigInt(tied.length));
  return { index: tied[pick]!, tied };
}

/** log(sum(exp(values))) computed stably. */
export function logSumExp(values: readonly number[]): number {
  const max = Math.max(...values);
  if (max === Number.NEGATIVE_INFINITY) return max;
  return max + Math.log(values.reduce((sum, value) => sum + Math.exp(value - max), 0));
}
