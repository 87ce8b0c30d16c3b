/**
 * The report's SALMON figures: from judged pairs, how often the two orders agree and how each principle's scores are
 * spread; from aggregated examples, the balance of the labels and what decided them.
 */
import type { StoreRecord } from "../run-store/index.js";

export interface Quantiles {
  min: number;
  p10: number;
  median: number;
  p90: number;
  max: number;
}

export interface PrincipleJudgmentStats {
  principle: string;
  pairs: number;
  /** Pairs where both orders agree (preference 1 or 2). */
  agree: number;
  preference1: number;
  preference2: number;
  s12: Quantiles;
  s21: Quantiles;
  /** Counts of mean(s12, s21) in the bins of `PreferenceStats.scoreBins`. */
  histogram: number[];
}

export interface LabelStats {
  examples: number;
  preference1: number;
  preference2: number;
  /** Examples whose label a rule decided, by rule. */
  rules: Record<string, number>;
  noiseFlips: number;
  swaps: number;
  /** Share of the chosen principles that were negated. */
  negatedShare: number;
  /** Examples by dominant principle. */
  byDominant: Record<string, number>;
  /** Examples by the number of principles listed. */
  subsetSizes: Record<string, number>;
}

export interface PreferenceStats {
  principles: PrincipleJudgmentStats[];
  /** Lower edges of the score histogram's bins, then the upper edge of the last. */
  scoreBins: number[];
  labels: LabelStats;
}

interface Judgment {
  principle: string;
  s12: number;
  s21: number;
  preference: number;
}

function quantiles(values: number[]): Quantiles {
  if (values.length === 0) return { min: 0, p10: 0, median: 0, p90: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))]!;
  return { min: sorted[0]!, p10: at(0.1), median: at(0.5), p90: at(0.9), max: sorted.at(-1)! };
}

const judgmentsOf = (record: StoreRecord): Judgment[] =>
  Array.isArray(record.judgments)
    ? (record.judgments as unknown[]).filter(
        (j): j is Judgment =>
          typeof j === "object" &&
          j !== null &&
          typeof (j as Judgment).principle === "string" &&
          Number.isFinite((j as Judgment).s12) &&
          Number.isFinite((j as Judgment).s21),
      )
    : [];

/** Figures of the judged pairs (`judged`) and the aggregated examples (`examples`). */
export function preferenceStats(judged: readonly StoreRecord[], examples: readonly StoreRecord[]): PreferenceStats {
  const byPrinciple = new Map<string, Judgment[]>();
  for (const record of judged) {
    for (const judgment of judgmentsOf(record)) {
      const list = byPrinciple.get(judgment.principle) ?? [];
      list.push(judgment);
      byPrinciple.set(judgment.principle, list);
    }
  }
  const means = [...byPrinciple.values()].flat().map((j) => (j.s12 + j.s21) / 2);
  const low = means.length ? Math.min(...means) : -1;
  const high = means.length ? Math.max(...means) : 1;
  const bins = 16;
  const width = (high - low || 1) / bins;
  const scoreBins = Array.from({ length: bins + 1 }, (_, i) => low + i * width);
  const principles = [...byPrinciple.entries()].map(([principle, list]) => {
    const histogram = Array.from({ length: bins }, () => 0);
    for (const j of list) histogram[Math.min(bins - 1, Math.floor(((j.s12 + j.s21) / 2 - low) / width))]!++;
    return {
      principle,
      pairs: list.length,
      agree: list.filter((j) => j.preference === 1 || j.preference === 2).length,
      preference1: list.filter((j) => j.preference === 1).length,
      preference2: list.filter((j) => j.preference === 2).length,
      s12: quantiles(list.map((j) => j.s12)),
      s21: quantiles(list.map((j) => j.s21)),
      histogram,
    };
  });

  const labels: LabelStats = {
    examples: examples.length,
    preference1: 0,
    preference2: 0,
    rules: {},
    noiseFlips: 0,
    swaps: 0,
    negatedShare: 0,
    byDominant: {},
    subsetSizes: {},
  };
  let chosen = 0;
  let negated = 0;
  for (const example of examples) {
    if (example.preference === 1) labels.preference1++;
    if (example.preference === 2) labels.preference2++;
    if (typeof example.rule === "string") labels.rules[example.rule] = (labels.rules[example.rule] ?? 0) + 1;
    if (example.noiseFlip === true) labels.noiseFlips++;
    if (example.swapped === true) labels.swaps++;
    const ids = Array.isArray(example.principles) ? example.principles.map(String) : [];
    const flags = Array.isArray(example.negated) ? example.negated : [];
    chosen += ids.length;
    negated += flags.filter((flag) => flag === true).length;
    const dominant = typeof example.dominant === "number" ? ids[example.dominant] : undefined;
    if (dominant !== undefined) labels.byDominant[dominant] = (labels.byDominant[dominant] ?? 0) + 1;
    labels.subsetSizes[String(ids.length)] = (labels.subsetSizes[String(ids.length)] ?? 0) + 1;
  }
  labels.negatedShare = chosen ? negated / chosen : 0;
  return { principles, scoreBins, labels };
}
