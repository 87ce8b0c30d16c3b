import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { lcsFMeasure, lcsLength, rougeL, rougeTokenize } from "./rouge-l.js";

describe("rougeTokenize", () => {
  it("lower-cases, maps non-alphanumerics to spaces and splits, without stemming", () => {
    expect(rougeTokenize("Hello, World! It's 3:00pm.")).toEqual(["hello", "world", "it", "s", "3", "00pm"]);
    expect(rougeTokenize("Running runners RAN")).toEqual(["running", "runners", "ran"]);
    expect(rougeTokenize("café  naïve\tfoo_bar")).toEqual(["caf", "na", "ve", "foo", "bar"]);
    expect(rougeTokenize("  ...  ")).toEqual([]);
  });
});

describe("rougeL", () => {
  it("matches hand-computed LCS F-measures", () => {
    // LCS("the cat sat on the mat", "the cat on the mat") = 5; P = 5/5, R = 5/6, F = 10/11.
    expect(rougeL("the cat sat on the mat", "the cat on the mat")).toBeCloseTo(10 / 11, 12);
    // Reversed order: LCS = 1 of 4 and 4 -> P = R = 1/4 -> F = 1/4.
    expect(rougeL("a b c d", "d c b a")).toBe(0.25);
    // Identical after normalisation.
    expect(rougeL("Hello, World!", "hello world")).toBe(1);
    // "write a poem about cats" vs "write a short poem about dogs": LCS 4 (write a poem about), 5 vs 6 -> 8/11.
    expect(rougeL("Write a poem about cats.", "write a short poem about dogs")).toBeCloseTo(8 / 11, 12);
    // Nothing shared.
    expect(rougeL("alpha beta", "gamma delta")).toBe(0);
  });

  it("is 0 when either side has no tokens", () => {
    expect(rougeL("", "anything at all")).toBe(0);
    expect(rougeL("?!", "?!")).toBe(0);
    expect(rougeL("", "")).toBe(0);
  });

  it("computes F as 2PR/(P+R) and is symmetric bit for bit", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(rougeL(a, b)).toBe(rougeL(b, a));
      }),
    );
    const lcs = 3;
    const p = lcs / 7;
    const r = lcs / 5;
    expect(lcsFMeasure(lcs, 5, 7)).toBe((2 * p * r) / (p + r));
  });

  it("lcsLength agrees with a recursive definition on small inputs", () => {
    const reference = (a: string[], b: string[]): number => {
      if (a.length === 0 || b.length === 0) return 0;
      if (a[0] === b[0]) return 1 + reference(a.slice(1), b.slice(1));
      return Math.max(reference(a.slice(1), b), reference(a, b.slice(1)));
    };
    const word = fc.constantFrom("a", "b", "c", "d");
    fc.assert(
      fc.property(fc.array(word, { maxLength: 7 }), fc.array(word, { maxLength: 7 }), (a, b) => {
        expect(lcsLength(a, b)).toBe(reference(a, b));
      }),
    );
  });
});
