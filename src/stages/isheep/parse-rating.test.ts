import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseSelfRating } from "./parse-rating.js";

const scoreOf = (text: string) => {
  const parsed = parseSelfRating(text);
  return parsed.ok ? parsed.score : parsed.reason;
};

describe("parseSelfRating", () => {
  it("reads the forms models write", () => {
    expect(scoreOf("9||clear and correct")).toBe(9);
    expect(scoreOf(" 8.5 || mostly right")).toBe(9);
    expect(scoreOf("8.4||close")).toBe(8);
    expect(scoreOf("Sure! My rating: 7||it rambles")).toBe(7);
    expect(scoreOf("After 3 readings I settle on 6 || two slips")).toBe(6);
    expect(scoreOf("Rating (1-10): 4||vague")).toBe(4);
    expect(scoreOf("**10**||perfect")).toBe(10);
    expect(scoreOf("7/10 because it is wordy")).toBe(7);
    expect(scoreOf("The answer earns 6 out of 10.")).toBe(6);
    expect(scoreOf("I would rate it 5, since it misses the point.")).toBe(5);
    expect(scoreOf("||8 good")).toBe(8);
    expect(scoreOf("3|wrong")).toBe(3);
    expect(parseSelfRating("9||clear")).toEqual({ ok: true, score: 9, raw: 9, explanation: "clear" });
  });

  it("fails with a reason on out-of-range, missing or ambiguous scores", () => {
    expect(scoreOf("0||useless")).toBe("score 0 is outside 1..10");
    expect(scoreOf("11||great")).toBe("score 11 is outside 1..10");
    expect(scoreOf("Score: -2||bad")).toBe("score -2 is outside 1..10");
    expect(scoreOf("10.6||")).toBe("score 10.6 is outside 1..10");
    expect(scoreOf("")).toBe("empty rating");
    expect(scoreOf("It is a fine answer||clear")).toMatch(/^no score/);
    expect(scoreOf("The answer lists 3 steps and 4 tips.")).toMatch(/several numbers \(3, 4\)/);
  });

  // Messy outputs built from parts whose intended score is known by construction.
  const digitFree = fc.constantFrom(
    "",
    " clear and correct",
    " it wanders off topic",
    ". The answer is vague and long-winded.",
    " - follows the format",
    "\nThe request is answered directly.",
    " because it repeats itself",
  );
  const anyText = fc.oneof(digitFree, fc.constantFrom(" 2 mistakes, 3 repeats", " see step 4", " || 5 more bars", ""));
  const inRange = fc.oneof(
    fc.integer({ min: 1, max: 10 }).map((n) => ({ text: String(n), score: n })),
    fc
      .integer({ min: 10, max: 100 })
      .map((tenths) => ({ text: (tenths / 10).toFixed(1), score: Math.floor(tenths / 10 + 0.5) })),
  );
  const outOfRange = fc.constantFrom("0", "11", "12", "20", "85", "100", "0.4", "10.6", "-3", "-1");
  const form = fc.constantFrom(
    (n: string) => n,
    (n: string) => `${n}/10`,
    (n: string) => `${n} / 10`,
    (n: string) => `${n} out of 10`,
    (n: string) => `**${n}**`,
  );
  /** Text before the score when a separator follows it (it may count things). */
  const prefixBeforeSeparator = fc.constantFrom(
    "",
    "  ",
    "Score: ",
    "Sure! My rating: ",
    "Rating (1-10): ",
    "After reading all 3 paragraphs, I give ",
    "Step 2 is wrong, so: ",
    "**Score:** ",
  );
  /** Text before the score when no separator follows: no digits. */
  const prefixAlone = fc.constantFrom(
    "",
    "  ",
    "Score: ",
    "My rating: ",
    "I would rate this answer ",
    "Sure! I give it ",
    "The answer is decent, ",
    "**",
  );
  const separator = fc.constantFrom("||", " || ", "||  ", " ||", "\t||");

  it("parses 1,000 messy in-range ratings to the intended score", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ prefix: prefixBeforeSeparator, number: inRange, form, separator, explanation: anyText }),
          fc.record({ prefix: prefixAlone, number: inRange, form, explanation: digitFree }),
        ),
        ({ prefix, number, form, explanation, ...rest }) => {
          const separatorText = "separator" in rest ? rest.separator : "";
          const text = `${prefix}${form(number.text)}${separatorText}${explanation}`;
          const parsed = parseSelfRating(text);
          expect(parsed, text).toMatchObject({ ok: true, score: number.score });
          if (parsed.ok && separatorText) expect(parsed.explanation).toBe(explanation.trim());
        },
      ),
      { numRuns: 1000, seed: 20240815 },
    );
  });

  it("rejects 1,000 messy out-of-range or score-less ratings", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ prefix: prefixBeforeSeparator, value: outOfRange, separator, explanation: anyText }),
          fc.record({ prefix: prefixAlone, value: outOfRange, explanation: digitFree }),
          fc.record({ prefix: fc.constant(""), value: fc.constant(""), explanation: digitFree }),
        ),
        ({ prefix, value, explanation, ...rest }) => {
          const separatorText = "separator" in rest ? rest.separator : "";
          const text = `${prefix.replace(/\d/g, "")}${value}${separatorText}${explanation}`;
          const parsed = parseSelfRating(text);
          expect(parsed.ok, text).toBe(false);
          if (!parsed.ok) expect(parsed.reason).toMatch(value ? `score ${value} is outside 1..10` : /score|empty/);
        },
      ),
      { numRuns: 1000, seed: 20240816 },
    );
  });
});
