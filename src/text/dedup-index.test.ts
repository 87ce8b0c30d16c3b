import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DedupIndex } from "./dedup-index.js";
import { rougeL } from "./rouge-l.js";

interface Decision {
  keep: boolean;
  maxScore: number;
  nearest?: string;
}

/** The reference loop: compare with every seed and accepted item. */
function bruteForce(seeds: string[], stream: string[], threshold: number): Decision[] {
  const pool = seeds.map((text, i) => ({ id: `seed-${i}`, text }));
  return stream.map((text, i) => {
    let maxScore = 0;
    let nearest: string | undefined;
    for (const item of pool) {
      const score = rougeL(text, item.text);
      if (nearest === undefined || score > maxScore) {
        maxScore = score;
        nearest = item.id;
      }
    }
    const keep = !(maxScore > threshold);
    if (keep) pool.push({ id: `item-${i}`, text });
    return { keep, maxScore, ...(nearest === undefined ? {} : { nearest }) };
  });
}

function viaIndex(seeds: string[], stream: string[], threshold: number): Decision[] {
  const index = new DedupIndex({ threshold });
  for (const [i, text] of seeds.entries()) index.add(text, `seed-${i}`);
  return stream.map((text, i) => index.offer(text, `item-${i}`));
}

function assertSameDecisions(seeds: string[], stream: string[], threshold: number): void {
  const expected = bruteForce(seeds, stream, threshold);
  const actual = viaIndex(seeds, stream, threshold);
  for (let i = 0; i < stream.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    expect(a.keep, `decision for #${i} ${JSON.stringify(stream[i])}`).toBe(e.keep);
    if (!e.keep) {
      // A dropped candidate's maximum is exact.
      expect(a.maxScore).toBe(e.maxScore);
    } else {
      expect(a.maxScore).toBeLessThanOrEqual(e.maxScore);
      expect(a.maxScore).toBeLessThanOrEqual(threshold);
    }
  }
}

const vocabulary = ["the", "a", "write", "poem", "about", "cats", "dogs", "list", "of", "best", "ways", "to", "x", "y"];
const word = fc.constantFrom(...vocabulary);
const sentence = fc.array(word, { minLength: 0, maxLength: 12 }).map((words) => words.join(" "));
const longSentence = fc.array(word, { minLength: 30, maxLength: 60 }).map((words) => words.join(" "));

/** A stream in which later items are edits of earlier ones (near-duplicates, reorderings, repeats, noise). */
const adversarialStream = fc
  .tuple(
    fc.array(fc.oneof(sentence, longSentence), { minLength: 1, maxLength: 6 }),
    fc.array(
      fc.record({
        base: fc.nat(),
        edit: fc.constantFrom(
          "delete",
          "insert",
          "swap",
          "repeat",
          "reverse",
          "punctuate",
          "empty",
          "same",
          "subsequence",
          "pad",
        ),
        position: fc.nat(),
        extra: word,
      }),
      { maxLength: 40 },
    ),
  )
  .map(([bases, edits]) => {
    const out = [...bases];
    for (const { base, edit, position, extra } of edits) {
      const words = (out[base % out.length] ?? "").split(" ").filter((w) => w.length > 0);
      const at = words.length === 0 ? 0 : position % words.length;
      switch (edit) {
        case "delete":
          words.splice(at, 1);
          break;
        case "insert":
          words.splice(at, 0, extra);
          break;
        case "swap":
          if (words.length > 1) [words[0], words[at]] = [words[at]!, words[0]!];
          break;
        case "repeat":
          words.splice(at, 0, extra, extra, extra);
          break;
        case "reverse":
          words.reverse();
          break;
        case "punctuate":
          out.push(`${words.join(", ").toUpperCase()}?!`);
          continue;
        case "empty":
          out.push("");
          continue;
        case "same":
          break;
        case "subsequence":
          // Keep words at positions not divisible by (position % 4 + 2): a shorter text whose LCS is all of it.
          out.push(words.filter((_, k) => k % ((position % 4) + 2) !== 0).join(" "));
          continue;
        case "pad":
          out.push([...words, ...Array.from({ length: (position % 9) + 1 }, () => extra)].join(" "));
          continue;
      }
      out.push(words.join(" "));
    }
    return out;
  });

describe("DedupIndex", () => {
  it("drops an obvious near-duplicate and keeps a distinct instruction", () => {
    const index = new DedupIndex();
    index.add("Write a poem about the sea.", "seed");
    const dup = index.check("write a poem about the sea");
    expect(dup).toEqual({ keep: false, maxScore: 1, nearest: "seed" });
    expect(index.check("Explain how vaccines train the immune system.").keep).toBe(true);
  });

  it("treats the threshold as strict: exactly 0.7 is kept", () => {
    // 7 shared tokens out of 10 and 10 -> F = 0.7 exactly in floating point? Check against rougeL itself.
    const a = "a b c d e f g h i j";
    const b = "a b c d e f g x y z";
    const score = rougeL(a, b);
    const index = new DedupIndex({ threshold: score });
    index.add(a);
    expect(index.check(b).keep).toBe(true);
    const stricter = new DedupIndex({ threshold: score - 1e-9 });
    stricter.add(a);
    expect(stricter.check(b).keep).toBe(false);
  });

  it("rejects thresholds outside [0, 1]", () => {
    expect(() => new DedupIndex({ threshold: 1.5 })).toThrow(RangeError);
    expect(() => new DedupIndex({ threshold: Number.NaN })).toThrow(RangeError);
  });

  it("makes the brute-force loop's decisions on random streams", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(sentence, longSentence), { maxLength: 5 }),
        fc.array(fc.oneof(sentence, sentence, longSentence), { maxLength: 40 }),
        fc.constantFrom(0, 0.01, 0.05, 0.3, 0.5, 0.7, 0.9, 1),
        (seeds, stream, threshold) => assertSameDecisions(seeds, stream, threshold),
      ),
      { numRuns: 150 },
    );
  });

  it("makes the brute-force loop's decisions on adversarial near-duplicate streams", () => {
    fc.assert(
      fc.property(
        fc.array(sentence, { maxLength: 3 }),
        adversarialStream,
        fc.oneof(fc.constantFrom(0.7, 0.5), fc.double({ min: 0, max: 1, noNaN: true })),
        (seeds, stream, threshold) => assertSameDecisions(seeds, stream, threshold),
      ),
      { numRuns: 150 },
    );
  });

  it("survives a JSON round trip with identical decisions", () => {
    fc.assert(
      fc.property(adversarialStream, fc.array(sentence, { maxLength: 10 }), (stream, probes) => {
        const index = new DedupIndex();
        for (const [i, text] of stream.entries()) index.offer(text, `i${i}`);
        const restored = DedupIndex.fromJSON(JSON.parse(JSON.stringify(index.toJSON())));
        expect(restored.size).toBe(index.size);
        for (const probe of probes) expect(restored.check(probe)).toEqual(index.check(probe));
      }),
      { numRuns: 50 },
    );
  });
});
