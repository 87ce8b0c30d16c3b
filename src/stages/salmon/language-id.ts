/**
 * Language identification for SALMON's language rule (method-spec B.3 step 6; the reference used fastText's LID
 * model). We use eld (Efficient Language Detector, pure JavaScript, 60 languages, its "small" n-gram database), and
 * only its reliable answers: a text it cannot place with confidence (short, code, symbols, gibberish) has no
 * language, so the rule never fires on a guess.
 */

/** An ISO 639-1 code, or undefined when the detector is not confident. */
export type LanguageOf = (text: string) => string | undefined;

interface EldResult {
  language: string;
  isReliable(): boolean;
}

let detector: Promise<{ detect(text: string): EldResult }> | undefined;

/** The eld detector, loaded once (its database is about 1.6 MB of JavaScript, read only when the rule is on). */
export async function loadLanguageOf(): Promise<LanguageOf> {
  detector ??= import("eld/small").then((module) => module.eld as unknown as { detect(text: string): EldResult });
  const eld = await detector;
  return (text) => {
    const result = eld.detect(text.replace(/\s+/g, " ").trim());
    return result.language !== "" && result.isReliable() ? result.language : undefined;
  };
}
