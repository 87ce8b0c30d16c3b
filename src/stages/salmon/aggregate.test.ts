import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  aggregateDefaults,
  aggregatePair,
  aggregatePairs,
  geometric,
  normalisedScore,
  principleVariances,
  type ScoredPair,
} from "./aggregate.js";
import { mulberry32 } from "../../random/mulberry32.js";

const principles = ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"];

/** Synthetic judged pairs: per principle, s12 and s21 agreeing in sign (no skips), of varied magnitude. */
const agreeingPairs = (count: number, seed: number): ScoredPair[] => {
  const random = mulberry32(seed);
  return Array.from({ length: count }, (_, i) => ({
    id: `pair-${seed}-${i}`,
    instruction: "Say something.",
    output1: `first ${i}`,
    output2: `second ${i}`,
    judgments: principles.map((principle) => {
      const sign = random() < 0.5 ? -1 : 1;
      return { principle, s12: sign * (0.1 + random()), s21: sign * (0.1 + random()) };
    }),
  }));
};

/** |observed - p| within five standard errors of a proportion over n draws. */
const expectRate = (hits: number, n: number, p: number) => {
  expect(n).toBeGreaterThan(100);
  expect(Math.abs(hits / n - p)).toBeLessThanOrEqual(5 * Math.sqrt((p * (1 - p)) / n));
};

describe("aggregation statistics on synthetic scores match method-spec B.3", () => {
  it("subset sizes follow Geometric(0.2) capped at 8 by redrawing", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 30 }), (seed) => {
        const { outcomes } = aggregatePairs(agreeingPairs(300, seed), principles, aggregateDefaults, seed);
        const n = outcomes.length;
        // P(k) = 0.8^(k-1) 0.2 / (1 - 0.8^8), for k = 1..8.
        const mass = 1 - 0.8 ** 8;
        for (let k = 1; k <= 8; k++) {
          const hits = outcomes.filter((outcome) => outcome.principles.length === k).length;
          expectRate(hits, n, (0.8 ** (k - 1) * 0.2) / mass);
        }
        expect(outcomes.every((outcome) => outcome.principles.length <= 8)).toBe(true);
        expect(outcomes.every((outcome) => new Set(outcome.principles).size === outcome.principles.length)).toBe(true);
      }),
      { numRuns: 12 },
    );
  });

  it("negates half of the chosen principles, flips 10% of labels (25% where a rule decided), swaps half", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 30 }), (seed) => {
        // Every third pair has "As an AI language model" in one output, so the rule decides about half of those.
        const pairs = agreeingPairs(400, seed).map((pair, i) =>
          i % 3 === 0 ? { ...pair, output1: `As an AI language model, ${pair.output1}` } : pair,
        );
        const { outcomes } = aggregatePairs(pairs, principles, aggregateDefaults, seed);
        const kept = outcomes.filter((outcome) => !outcome.skip);
        expect(kept).toHaveLength(outcomes.length);
        const flags = kept.flatMap((outcome) => outcome.negated);
        expectRate(flags.filter(Boolean).length, flags.length, 0.5);
        const ruled = kept.filter((outcome) => outcome.ruleFlag);
        const unruled = kept.filter((outcome) => !outcome.ruleFlag);
        expectRate(ruled.filter((outcome) => outcome.noiseFlip).length, ruled.length, 0.25);
        expectRate(unruled.filter((outcome) => outcome.noiseFlip).length, unruled.length, 0.1);
        expectRate(kept.filter((outcome) => outcome.swapped).length, kept.length, 0.5);
        // The rule applies with probability 0.5 where exactly one output has the phrase, never elsewhere.
        const withPhrase = kept.filter((outcome) => pairs.findIndex((pair) => pair.id === outcome.pairId) % 3 === 0);
        expectRate(withPhrase.filter((outcome) => outcome.rule === "ai-phrase").length, withPhrase.length, 0.5);
        expect(ruled.every((outcome) => withPhrase.includes(outcome))).toBe(true);
      }),
      { numRuns: 12 },
    );
  });

  it("labels by the dominant normalised score, negation, rule, noise and swap, as a brute-force re-derivation says", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.array(
          fc.array(fc.tuple(fc.double({ min: -4, max: 4, noNaN: true }), fc.double({ min: -4, max: 4, noNaN: true })), {
            minLength: 8,
            maxLength: 8,
          }),
          { minLength: 2, maxLength: 20 },
        ),
        fc.boolean(),
        (seed, scores, phrase) => {
          const pairs: ScoredPair[] = scores.map((row, i) => ({
            id: `q${i}`,
            instruction: "x",
            output1: phrase && i % 2 === 0 ? "As an AI language model, no." : "one",
            output2: "two",
            judgments: row.map(([s12, s21], j) => ({ principle: principles[j]!, s12, s21 })),
          }));
          const variances = principleVariances(pairs, principles);
          for (const pair of pairs) {
            const outcome = aggregatePair(pair, 1, principles, variances, aggregateDefaults, seed);
            // Recompute the scores of the chosen principles from the judgments.
            const expected = outcome.principles.map((principle, index) => {
              const judgment = pair.judgments.find((one) => one.principle === principle)!;
              const agree = Math.sign(judgment.s12) === Math.sign(judgment.s21) && judgment.s12 !== 0;
              const variance = variances.get(principle)!;
              const score = agree && variance > 0 ? (judgment.s12 + judgment.s21) / 2 / variance : 0;
              return outcome.negated[index] ? -score : score;
            });
            const stored = outcome.swapped ? outcome.scores.map((score) => -score) : outcome.scores;
            expect(stored).toEqual(expected);
            const largest = Math.max(...expected.map(Math.abs));
            expect(Math.abs(expected[outcome.dominant]!)).toBe(largest);
            expect(expected.findIndex((score) => Math.abs(score) === largest)).toBe(outcome.dominant);
            if (largest === 0) {
              expect(outcome.skip?.filter).toBe("no-preference");
              continue;
            }
            let label = expected[outcome.dominant]! > 0 ? 1 : 2;
            if (outcome.rule === "ai-phrase") label = pair.output1.includes("As an AI language model") ? 2 : 1;
            if (outcome.noiseFlip) label = 3 - label;
            if (outcome.swapped) label = 3 - label;
            expect(outcome.preference).toBe(label);
            expect([outcome.output1, outcome.output2]).toEqual(
              outcome.swapped ? [pair.output2, pair.output1] : [pair.output1, pair.output2],
            );
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it("is reproducible with a seed, whatever the order of the pairs, and another seed draws otherwise", () => {
    const pairs = agreeingPairs(50, 3);
    const one = aggregatePairs(pairs, principles, aggregateDefaults, 7).outcomes;
    const again = aggregatePairs(pairs, principles, aggregateDefaults, 7).outcomes;
    expect(again).toEqual(one);
    const reversed = aggregatePairs([...pairs].reverse(), principles, aggregateDefaults, 7).outcomes;
    const key = (outcome: (typeof one)[number]) => `${outcome.pass}/${outcome.pairId}`;
    const sortByKey = (list: typeof one) => [...list].sort((a, b) => key(a).localeCompare(key(b)));
    expect(sortByKey(reversed)).toEqual(sortByKey(one));
    const other = aggregatePairs(pairs, principles, aggregateDefaults, 8).outcomes;
    expect(other.map((outcome) => outcome.principles)).not.toEqual(one.map((outcome) => outcome.principles));
    // Four passes over every pair.
    expect(one).toHaveLength(4 * pairs.length);
  });
});

describe("aggregation rules", () => {
  const pair: ScoredPair = {
    id: "r",
    instruction: "What is the capital of France?",
    output1: "The capital of France is Paris.",
    output2: "La capitale de la France est Paris.",
    judgments: principles.map((principle) => ({ principle, s12: 1, s21: 1.5 })),
  };
  const variances = new Map(principles.map((principle) => [principle, 2]));
  const noNoise = { ...aggregateDefaults, noiseRate: 0, ruleNoiseRate: 0, swapRate: 0, negationRate: 0 };
  const languageOf = (text: string) => (text.startsWith("La ") ? "fr" : text.includes("xx") ? undefined : "en");

  it("divides the mean of the two orders by the variance, and scores 0 where the orders disagree", () => {
    expect(normalisedScore(1, 3, 4)).toBe(0.5);
    expect(normalisedScore(-1, -3, 4)).toBe(-0.5);
    expect(normalisedScore(1, -3, 4)).toBe(0);
    expect(normalisedScore(0, 3, 4)).toBe(0);
    expect(normalisedScore(1, 3, 0)).toBe(0);
    expect(principleVariances([pair], ["p1"]).get("p1")).toBeCloseTo(0.0625, 12);
  });

  it("prefers the output in the instruction's language, and drops a pair where both are in another", () => {
    const outcome = aggregatePair(
      { ...pair, judgments: pair.judgments.map((j) => ({ ...j, s12: -1, s21: -1 })) },
      1,
      principles,
      variances,
      noNoise,
      1,
      languageOf,
    );
    // The judge preferred output 2, but output 2 is French: the rule decides for output 1.
    expect(outcome).toMatchObject({ preference: 1, rule: "language", ruleFlag: true });
    expect(outcome.languages).toEqual({ instruction: "en", output1: "en", output2: "fr" });
    const both = aggregatePair({ ...pair, output1: "La la la." }, 1, principles, variances, noNoise, 1, languageOf);
    expect(both.skip?.filter).toBe("language");
    // An output whose language is unknown never counts as another language.
    const unknown = aggregatePair({ ...pair, output2: "xx" }, 1, principles, variances, noNoise, 1, languageOf);
    expect(unknown).toMatchObject({ preference: 1, ruleFlag: false });
    expect(unknown.rule).toBeUndefined();
  });

  it("geometric draws are on 1, 2, ... with mean 1/p", () => {
    const random = mulberry32(2);
    const draws = Array.from({ length: 40_000 }, () => geometric(random, 0.2));
    expect(Math.min(...draws)).toBe(1);
    const mean = draws.reduce((sum, k) => sum + k, 0) / draws.length;
    expect(Math.abs(mean - 5)).toBeLessThan(0.1);
  });
});
