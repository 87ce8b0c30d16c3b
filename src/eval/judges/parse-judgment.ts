/**
 * Parsers for judge outputs. Judges do not always follow the requested "[[7]]" / "[[A]]" form, so the parsers try
 * the requested form first, then common variants ("Rating: 7/10", "score of 8 out of 10", a bare "7.5",
 * "Verdict: B", "Assistant A is better", "tie"). A failure returns a reason; callers count it, never drop it.
 */

export type RatingParse = { ok: true; rating: number; form: string } | { ok: false; reason: string };

const number = String.raw`(\d+(?:\.\d+)?)`;
const ratingPatterns: Array<{ form: string; pattern: RegExp }> = [
  { form: "[[n]]", pattern: new RegExp(String.raw`\[\[\s*${number}\s*(?:\/\s*10\s*)?\]\]`, "g") },
  {
    form: "rating: n",
    pattern: new RegExp(String.raw`\b(?:rating|score|grade)\b[^\d\n]{0,16}?${number}(?!\s*\d)`, "gi"),
  },
  { form: "n/10", pattern: new RegExp(String.raw`${number}\s*(?:\/|out of)\s*10\b`, "gi") },
  { form: "[n]", pattern: new RegExp(String.raw`\[\s*${number}\s*\]`, "g") },
  { form: "bare number", pattern: new RegExp(String.raw`^\s*\**\s*${number}\s*\**\s*\.?\s*$`, "g") },
];

/** The last match of the first form that matches at all (judges restate the requested format before answering). */
function lastMatchOfFirstForm(
  output: string,
  patterns: ReadonlyArray<{ form: string; pattern: RegExp }>,
): { form: string; value: string } | undefined {
  for (const { form, pattern } of patterns) {
    const last = [...output.matchAll(pattern)].at(-1);
    if (last) return { form, value: last[1]! };
  }
  return undefined;
}

/** Parse a 1-10 rating; the last match of the most specific form wins (judges restate the format first). */
export function parseRating(output: string): RatingParse {
  const found = lastMatchOfFirstForm(output, ratingPatterns);
  if (!found) return { ok: false, reason: "no rating found (expected e.g. [[7]] or Rating: 7/10)" };
  const rating = Number(found.value);
  if (!(rating >= 1 && rating <= 10)) {
    return { ok: false, reason: `rating ${found.value} (form ${found.form}) is outside 1-10` };
  }
  return { ok: true, rating, form: found.form };
}

export const verdicts = ["A", "B", "tie"] as const;
export type Verdict = (typeof verdicts)[number];
export type VerdictParse = { ok: true; verdict: Verdict; form: string } | { ok: false; reason: string };

const verdictPatterns: Array<{ form: string; pattern: RegExp }> = [
  { form: "[[X]]", pattern: /\[\[\s*(A|B|C|tie)\s*\]\]/gi },
  {
    form: "verdict: X",
    pattern: /\b(?:verdict|winner|answer|choice)\b\W{0,6}(?:is\W{0,3})?(?:assistant\s+)?\b(A|B|C|tie)\b/gi,
  },
  { form: "assistant X is better", pattern: /\bassistant\s+(A|B)\b[^.\n]{0,40}\b(?:better|superior|wins)\b/gi },
  { form: "[X]", pattern: /\[\s*(A|B|C)\s*\]/g },
  { form: "bare verdict", pattern: /^\W*(A|B|C|tie)\W*$/gi },
];

/** Parse a pairwise verdict: A, B, or tie ("C" and "tie" both mean tie). The last match of the first form wins. */
export function parseVerdict(output: string): VerdictParse {
  const found = lastMatchOfFirstForm(output, verdictPatterns);
  if (found) {
    const token = found.value.toUpperCase();
    return { ok: true, verdict: token === "A" ? "A" : token === "B" ? "B" : "tie", form: found.form };
  }
  if (/\b(?:it'?s a tie|is a tie|equally good|equally bad)\b/i.test(output)) {
    return { ok: true, verdict: "tie", form: "tie phrase" };
  }
  return { ok: false, reason: "no verdict found (expected [[A]], [[B]] or [[C]])" };
}
