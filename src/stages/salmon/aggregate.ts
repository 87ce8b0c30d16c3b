/**
 * SALMON step 3, aggregation into instructable preference data (method-spec B.3), as pure functions. Per pass and
 * pair: shuffle the principles, draw a subset size k ~ Geometric(0.2) (redrawn while above the cap), negate each
 * chosen principle with probability 0.5, normalise each principle's score by its variance, let the principle with the
 * largest |score| decide, apply the "As an AI language model" and language rules, flip the label with probability
 * 0.1 (0.25 when a rule decided), and swap the two outputs half of the time. Every draw comes from a generator seeded
 * by (seed, pass, pair): reproducible, whatever the order the pairs are processed in (the reference's NumPy draws
 * were unseeded).
 */
import { recordId } from "../../run-store/index.js";
import { seededRandom, shuffled } from "../shared/random.js";
import type { LanguageOf } from "./language-id.js";

/** The rates and sizes of B.3, each with the reference's value as default. */
export interface AggregateSettings {
  /** Passes over the pairs; each pass draws afresh. Default 4. */
  passes: number;
  /** The largest principle subset (k is redrawn while above it, and above the number of principles). Default 8. */
  maxPrinciples: number;
  /** Success probability of the geometric subset size on {1, 2, ...}. Default 0.2. */
  geometricP: number;
  /** Probability that each chosen principle is negated. Default 0.5. */
  negationRate: number;
  /** Probability of flipping the label when no rule decided it. Default 0.1. */
  noiseRate: number;
  /** Probability of flipping the label when a rule decided it. Default 0.25 (0.1 x 2.5). */
  ruleNoiseRate: number;
  /** Probability of swapping the two outputs (their scores negated, the label flipped). Default 0.5. */
  swapRate: number;
  /** An output containing this phrase (case-sensitive), when the other does not, loses with `aiRuleRate`. "" = off. */
  aiPhrase: string;
  /** Default 0.5. */
  aiRuleRate: number;
}

export const aggregateDefaults = {
  passes: 4,
  maxPrinciples: 8,
  geometricP: 0.2,
  negationRate: 0.5,
  noiseRate: 0.1,
  ruleNoiseRate: 0.25,
  swapRate: 0.5,
  aiPhrase: "As an AI language model",
  aiRuleRate: 0.5,
} as const satisfies AggregateSettings;

/** A judged pair: both outputs and, per principle id, the two order scores. */
export interface ScoredPair {
  id: string;
  instruction: string;
  output1: string;
  output2: string;
  judgments: ReadonlyArray<{ principle: string; s12: number; s21: number }>;
}

/**
 * Each principle's variance over every s12 and s21 value of the pairs (the population variance, as NumPy's `var`).
 * The reference divides a principle's mean score by this variance, not by its standard deviation; so do we. The
 * values are summed in sorted order, so the result does not depend on the order the pairs are read in (a resumed
 * stage may have written them in another order) down to the last bit.
 */
export function principleVariances(pairs: readonly ScoredPair[], principles: readonly string[]): Map<string, number> {
  const variances = new Map<string, number>();
  for (const principle of principles) {
    const values: number[] = [];
    for (const pair of pairs) {
      const judgment = pair.judgments.find((one) => one.principle === principle);
      if (judgment) values.push(judgment.s12, judgment.s21);
    }
    values.sort((a, b) => a - b);
    const mean = values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
    variances.set(principle, values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / Math.max(1, values.length));
  }
  return variances;
}

/** A principle's normalised score on a pair: mean(s12, s21) / variance when both orders agree in sign, else 0. */
export function normalisedScore(s12: number, s21: number, variance: number): number {
  const agree = (s12 > 0 && s21 > 0) || (s12 < 0 && s21 < 0);
  if (!agree || !(variance > 0)) return 0;
  return (s12 + s21) / 2 / variance;
}

/** A draw from Geometric(p) on {1, 2, ...}: the number of trials up to the first success. */
export function geometric(random: () => number, p: number): number {
  if (p >= 1) return 1;
  return 1 + Math.floor(Math.log(1 - random()) / Math.log(1 - p));
}

export type AggregateRule = "ai-phrase" | "language";

/** What one pass made of one pair: the draws, and either a labelled example or why it was skipped. */
export interface AggregateOutcome {
  pass: number;
  pairId: string;
  /** The chosen principles (ids), in the drawn order. */
  principles: string[];
  negated: boolean[];
  /** Normalised scores, negation applied, positive when `output1` is preferred (so negated again on a swap). */
  scores: number[];
  /** Index (into `principles`) of the principle with the largest |score|. */
  dominant: number;
  output1: string;
  output2: string;
  /** 1: output1 preferred, 2: output2 (after rules, noise and the swap). */
  preference: 1 | 2;
  /** A rule decided the label. */
  ruleFlag: boolean;
  rule?: AggregateRule;
  /** The label was flipped as noise. */
  noiseFlip: boolean;
  /** The outputs were swapped (relative to the pair's output1, output2). */
  swapped: boolean;
  /** Languages of the instruction and the two outputs (after the swap); null where unknown. Absent with the rule off. */
  languages?: { instruction: string | null; output1: string | null; output2: string | null };
  /** Set when no example came out: "no-preference" (every chosen score is 0) or "language". */
  skip?: { filter: "no-preference" | "language"; reason: string };
}

/**
 * One pass over one pair (B.3 steps 1-8). `variances` by principle id; `principles` are the principles used, each
 * of which the pair must have a judgment for; `languageOf` turns the language rule on.
 */
export function aggregatePair(
  pair: ScoredPair,
  pass: number,
  principles: readonly string[],
  variances: ReadonlyMap<string, number>,
  settings: AggregateSettings,
  seed: number,
  languageOf?: LanguageOf,
): AggregateOutcome {
  const random = seededRandom("salmon-aggregate", seed, pass, pair.id);
  // 1. A shuffled order and a geometric subset size, redrawn while larger than the cap.
  const order = shuffled(random, principles);
  const cap = Math.min(settings.maxPrinciples, principles.length);
  let k = geometric(random, settings.geometricP);
  while (k > cap) k = geometric(random, settings.geometricP);
  const chosen = order.slice(0, k);
  // 3. Negations; then the coins of the rules, the noise and the swap, always drawn so later draws do not depend
  // on the data.
  const negated = chosen.map(() => random() < settings.negationRate);
  const aiCoin = random();
  const noiseCoin = random();
  const swapCoin = random();
  // 2. Normalised scores, negated principles pointing the other way.
  const scores = chosen.map((principle, index) => {
    const judgment = pair.judgments.find((one) => one.principle === principle);
    if (!judgment) throw new Error(`pair ${pair.id} has no judgment for principle "${principle}"`);
    const score = normalisedScore(judgment.s12, judgment.s21, variances.get(principle) ?? 0);
    return negated[index] ? -score : score;
  });
  // 4. The dominant principle decides (the first of equal magnitudes, as NumPy's argmax).
  let dominant = 0;
  scores.forEach((score, index) => {
    if (Math.abs(score) > Math.abs(scores[dominant]!)) dominant = index;
  });
  const base = { pass, pairId: pair.id, principles: chosen, negated, dominant, noiseFlip: false, ruleFlag: false };
  const decisive = scores[dominant]!;
  let preference: 1 | 2 = decisive > 0 ? 1 : 2;
  let rule: AggregateRule | undefined;
  const skipped = (skip: NonNullable<AggregateOutcome["skip"]>): AggregateOutcome => ({
    ...base,
    scores,
    output1: pair.output1,
    output2: pair.output2,
    preference,
    swapped: false,
    skip,
  });
  if (decisive === 0)
    return skipped({
      filter: "no-preference",
      reason: `none of the ${chosen.length} chosen principles prefers an output in both orders`,
    });
  // 5. The "As an AI language model" rule.
  if (settings.aiPhrase !== "") {
    const in1 = pair.output1.includes(settings.aiPhrase);
    const in2 = pair.output2.includes(settings.aiPhrase);
    if (in1 !== in2 && aiCoin < settings.aiRuleRate) {
      preference = in1 ? 2 : 1;
      rule = "ai-phrase";
    }
  }
  // 6. The language rule: an output in another language than the instruction loses; if both are, no example.
  let languages: AggregateOutcome["languages"];
  if (languageOf) {
    const instruction = languageOf(pair.instruction) ?? null;
    const first = languageOf(pair.output1) ?? null;
    const second = languageOf(pair.output2) ?? null;
    languages = { instruction, output1: first, output2: second };
    const differs = (language: string | null) => instruction !== null && language !== null && language !== instruction;
    if (differs(first) && differs(second)) {
      return {
        ...skipped({
          filter: "language",
          reason: `both outputs (${first}, ${second}) are in another language than the instruction (${instruction})`,
        }),
        languages,
      };
    }
    if (differs(first) || differs(second)) {
      preference = differs(first) ? 2 : 1;
      rule = "language";
    }
  }
  // 7. Label noise, stronger on rule-decided labels.
  const ruleFlag = rule !== undefined;
  const noiseFlip = noiseCoin < (ruleFlag ? settings.ruleNoiseRate : settings.noiseRate);
  if (noiseFlip) preference = preference === 1 ? 2 : 1;
  // 8. A random order.
  const swapped = swapCoin < settings.swapRate;
  return {
    ...base,
    scores: swapped ? scores.map((score) => -score) : scores,
    output1: swapped ? pair.output2 : pair.output1,
    output2: swapped ? pair.output1 : pair.output2,
    preference: swapped ? (preference === 1 ? 2 : 1) : preference,
    ruleFlag,
    ...(rule ? { rule } : {}),
    noiseFlip,
    swapped,
    ...(languages
      ? {
          languages: swapped
            ? { instruction: languages.instruction, output1: languages.output2, output2: languages.output1 }
            : languages,
        }
      : {}),
  };
}

/** Every pass over every pair, in order (pass 1's pairs, then pass 2's, ...). */
export function aggregatePairs(
  pairs: readonly ScoredPair[],
  principles: readonly string[],
  settings: AggregateSettings,
  seed: number,
  languageOf?: LanguageOf,
): { variances: Map<string, number>; outcomes: AggregateOutcome[] } {
  const variances = principleVariances(pairs, principles);
  const outcomes: AggregateOutcome[] = [];
  for (let pass = 1; pass <= settings.passes; pass++)
    for (const pair of pairs)
      outcomes.push(aggregatePair(pair, pass, principles, variances, settings, seed, languageOf));
  return { variances, outcomes };
}

/** An id for the set of pairs and variances an aggregation was computed from (records of another set are stale). */
export function aggregateSetId(pairs: readonly ScoredPair[], variances: ReadonlyMap<string, number>): string {
  return recordId("salmon-aggregate-set", pairs.map((pair) => pair.id).sort(), [...variances.entries()]);
}
