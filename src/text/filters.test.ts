import { describe, expect, it } from "vitest";
import {
  cutRepeatedSegments,
  endsWithPunctuation,
  findBlacklistedSubstring,
  findBlacklistedWord,
  normalizeForExactMatch,
  startsWithNonAscii,
  startsWithPunctuation,
  wordCount,
} from "./filters.js";

describe("text filters", () => {
  it("counts whitespace-separated words", () => {
    expect(wordCount("  Write a\tshort\n poem. ")).toBe(4);
    expect(wordCount("   ")).toBe(0);
  });

  it("matches blacklisted keywords as whole words only, case-insensitively", () => {
    const keywords = ["image", "go to", "map"];
    expect(findBlacklistedWord("Describe this IMAGE please", keywords)).toBe("image");
    expect(findBlacklistedWord("Imagine a world", keywords)).toBeUndefined();
    expect(findBlacklistedWord("Go  to the store", keywords)).toBe("go to");
    expect(findBlacklistedWord("a bitmap of", keywords)).toBeUndefined();
    expect(findBlacklistedWord("map: (x)", keywords)).toBe("map");
  });

  it("finds blacklisted substrings case-sensitively", () => {
    expect(findBlacklistedSubstring("the Alpaca family", ["alpaca", "Alpaca"])).toBe("Alpaca");
    expect(findBlacklistedSubstring("nothing here", ["x y"])).toBeUndefined();
  });

  it("cuts at the first repeated segment like dedup()", () => {
    // Segments compare verbatim, leading space included, as the reference does.
    expect(cutRepeatedSegments("I can help. I can help. More.")).toEqual({ text: "I can help. I can help. More." });
    expect(cutRepeatedSegments("Yes. No. Yes. No.")).toEqual({ text: "Yes. No. Yes.", repeated: " No." });
    expect(cutRepeatedSegments("I can help.\nI can help.\nBye.")).toEqual({
      text: "I can help.\n",
      repeated: "I can help.",
    });
    // Lone delimiters and blank lines are exempt.
    expect(cutRepeatedSegments("a,\n\nb,\n\nc.")).toEqual({ text: "a,\n\nb,\n\nc." });
    expect(cutRepeatedSegments("One, two, three.")).toEqual({ text: "One, two, three." });
    expect(cutRepeatedSegments("x: 1\nx: 1\n")).toEqual({ text: "x: 1\n", repeated: "x:" });
  });

  it("checks first and last characters", () => {
    expect(startsWithPunctuation("(Write")).toBe(true);
    expect(startsWithPunctuation("Write")).toBe(false);
    expect(startsWithPunctuation("")).toBe(false);
    expect(startsWithNonAscii("Écrire")).toBe(true);
    expect(startsWithNonAscii("Ecrire")).toBe(false);
    expect(endsWithPunctuation("Space travel.")).toBe(true);
    expect(endsWithPunctuation("Space travel")).toBe(false);
  });

  it("normalises for exact-match merging", () => {
    expect(normalizeForExactMatch("Write a Poem!")).toBe(normalizeForExactMatch("write a poem"));
  });
});
