/**
 * Read a self-assessment `<score>||<explanation>` (method-spec C.4) from what a model actually writes: text before
 * the score ("Sure! My rating: 8||..."), a missing `||`, decimals ("8.5"), "7/10", "7 out of 10", markdown around
 * the number. A score must lie in 1..10; decimals are rounded half up. Anything else is a parse failure with a reason
 * (the stage keeps it as a rejection), never a guess.
 */
import { ratingSeparator } from "./prompt.js";

export type ParsedRating =
  | { ok: true; score: number; raw: number; explanation: string }
  | { ok: false; reason: string };

/** A number, with a minus sign only where it cannot be a range dash ("1-10"). */
const numberPattern = /(?:(?<=^|[\s:(=*_])-)?(?<![\d.])\d+(?:\.\d+)?(?![\d])/g;
/** "7/10", "7 / 10", "7 out of 10". */
const outOfTenPattern = /(?<![\d.])(\d+(?:\.\d+)?)\s*(?:\/|out of)\s*10(?!\.?\d)/i;
/** A number introduced as the score: "score: 7", "rating of 6", "I rate it 8", "I give it a 9". */
const keywordPattern = /\b(?:score|rating|rated?|grade|give)\b[^\d\n]{0,24}?((?:(?<=\s)-)?\d+(?:\.\d+)?)(?![\d])/i;

/** "1-10", "1 to 10": the scale named in the rating, not a score. */
const scalePattern = /(?<![\d.])1\s*(?:-|–|to)\s*10(?!\.?\d)/gi;
const leadingPattern = /^[^\w-]*(-?\d+(?:\.\d+)?)(?![\d])/;

const numbersIn = (text: string) => [...text.matchAll(numberPattern)].map((match) => match[0]);

/**
 * The number a text offers as its score, or why there is none. Before "||" (`beforeSeparator`) the score is the last
 * number, since the text before it may count things; without a separator it is a leading number, "N/10", a number
 * after a word like "score", or else the only number.
 */
function findScore(text: string, beforeSeparator: boolean): { value: string } | { reason: string } {
  const cleaned = text.replace(scalePattern, " ");
  const outOfTen = outOfTenPattern.exec(cleaned);
  const leading = leadingPattern.exec(cleaned);
  if (!beforeSeparator && leading) return { value: leading[1]! };
  if (outOfTen) return { value: outOfTen[1]! };
  const numbers = numbersIn(cleaned);
  if (beforeSeparator && numbers.length > 0) return { value: numbers.at(-1)! };
  const keyword = keywordPattern.exec(cleaned);
  if (keyword) return { value: keyword[1]! };
  if (numbers.length === 1) return { value: numbers[0]! };
  if (numbers.length === 0) return { reason: "no score (no number)" };
  return { reason: `several numbers (${numbers.slice(0, 4).join(", ")}) and none marked as the score` };
}

export function parseSelfRating(text: string): ParsedRating {
  const trimmed = text.trim();
  if (trimmed === "") return { ok: false, reason: "empty rating" };
  const at = trimmed.indexOf(ratingSeparator);
  let found: { value: string } | { reason: string };
  let explanation: string;
  if (at >= 0) {
    const head = trimmed.slice(0, at);
    const tail = trimmed.slice(at + ratingSeparator.length);
    explanation = tail.trim();
    found = findScore(head, true);
    if ("reason" in found) {
      // "||8 because ...": the score came after the separator.
      const after = leadingPattern.exec(tail);
      if (after) {
        found = { value: after[1]! };
        explanation = tail.slice(after.index + after[0].length).trim();
      } else found = { reason: `${found.reason} before or after "${ratingSeparator}"` };
    }
  } else {
    explanation = trimmed;
    found = findScore(trimmed, false);
  }
  if ("reason" in found) return { ok: false, reason: found.reason };
  const raw = Number(found.value);
  if (!Number.isFinite(raw) || raw < 1 || raw > 10) {
    return { ok: false, reason: `score ${found.value} is outside 1..10` };
  }
  return { ok: true, score: Math.floor(raw + 0.5), raw, explanation };
}
