import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { NgramPenalty } from "../language-model.js";
import { NgramPenaltyTracker } from "./ngram-penalty.js";

/** Brute force, straight from method-spec A.1: scan every generated n-gram for each step. */
function bruteForce(generated: number[], penalties: NgramPenalty[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const { n, penalty } of penalties) {
    if (penalty === 0) continue;
    const context = generated.slice(generated.length - (n - 1));
    if (context.length !== n - 1) continue;
    for (let end = n - 1; end < generated.length; end++) {
      const gram = generated.slice(end - n + 1, end + 1);
      if (gram.slice(0, n - 1).every((token, i) => token === context[i])) {
        const last = gram[n - 1] as number;
        out.set(last, (out.get(last) ?? 0) - penalty);
      }
    }
  }
  return out;
}

describe("NgramPenaltyTracker", () => {
  it("computes the hand-worked example", () => {
    const tracker = new NgramPenaltyTracker([
      { n: 1, penalty: 1 },
      { n: 2, penalty: 10 },
      { n: 3, penalty: 100 },
    ]);
    for (const token of [5, 6, 5, 6, 5]) tracker.push(token);
    // unigrams: 5 x3, 6 x2; bigrams after "5": (5,6) x2; trigrams after "6 5": (6,5,6) x1.
    expect(Object.fromEntries(tracker.addPenalties(new Map()))).toEqual({ 5: -3, 6: -122 });
  });

  it("equals the brute-force definition on random sequences", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 40 }),
        fc.array(
          fc.record({ n: fc.integer({ min: 1, max: 4 }), penalty: fc.double({ min: 0, max: 3, noNaN: true }) }),
          {
            maxLength: 4,
          },
        ),
        (tokens, penalties) => {
          const tracker = new NgramPenaltyTracker(penalties);
          for (let i = 0; i <= tokens.length; i++) {
            const expected = bruteForce(tokens.slice(0, i), penalties);
            const actual = tracker.addPenalties(new Map());
            expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
            for (const [token, value] of expected) expect(actual.get(token)).toBeCloseTo(value, 9);
            if (i < tokens.length) tracker.push(tokens[i] as number);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("rejects n < 1", () => {
    expect(() => new NgramPenaltyTracker([{ n: 0, penalty: 1 }])).toThrow(RangeError);
  });
});
