/**
 * Small text predicates shared by the stage filters: word counts, whole-word keyword blacklists, the
 * repeated-segment cut of SELF-ALIGN's `dedup()` post-processing, and start-of-text checks.
 */

/** Words as `str.split()` counts them: runs of non-whitespace. */
export function wordCount(text: string): number {
  const trimmed = text.trim();
  return trimmed.length === 0 ? 0 : trimmed.split(/\s+/).length;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The first blacklisted keyword that occurs in `text` as a whole word (or whole phrase), case-insensitively;
 * undefined when none does. Word boundaries follow regex `\b`.
 */
export function findBlacklistedWord(text: string, keywords: readonly string[]): string | undefined {
  for (const keyword of keywords) {
    const pattern = new RegExp(`\\b${escapeRegExp(keyword).replace(/\s+/g, "\\s+")}\\b`, "i");
    if (pattern.test(text)) return keyword;
  }
  return undefined;
}

/** The first blacklisted substring (case-sensitive, anywhere) in `text`; undefined when none occurs. */
export function findBlacklistedSubstring(text: string, substrings: readonly string[]): string | undefined {
  for (const substring of substrings) if (substring.length > 0 && text.includes(substring)) return substring;
  return undefined;
}

const segmentDelimiters = new Set(["\n", ".", "?", "!", ";", ":", ","]);

export interface RepeatCut {
  /** The text up to (not including) the first repeated segment; the input unchanged when nothing repeats. */
  text: string;
  /** The segment that repeated, when a cut happened. */
  repeated?: string;
}

/**
 * SELF-ALIGN's `dedup()`: split after every `\n . ? ! ; : ,`, walk the segments and stop at the first one that
 * already occurred verbatim earlier. Empty segments and lone delimiter characters never count as repeats.
 */
export function cutRepeatedSegments(text: string, options: { extraDelimiters?: string } = {}): RepeatCut {
  // Verbose cloning also splits after a backtick (method-spec A.6).
  const extra = (options.extraDelimiters ?? "").replace(/[\\\]^-]/g, "\\$&");
  const segments = text.split(new RegExp(`(?<=[\\n.?!;:,${extra}])`));
  const seen = new Set<string>();
  const kept: string[] = [];
  for (const segment of segments) {
    const exempt =
      segment.length === 0 ||
      (segment.length === 1 && (segmentDelimiters.has(segment) || (options.extraDelimiters ?? "").includes(segment)));
    if (!exempt && seen.has(segment)) return { text: kept.join(""), repeated: segment };
    seen.add(segment);
    kept.push(segment);
  }
  return { text };
}

const asciiPunctuation = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

/** Whether the first character is ASCII punctuation (Python's `string.punctuation`). */
export function startsWithPunctuation(text: string): boolean {
  return text.length > 0 && asciiPunctuation.has(text[0]!);
}

/** Whether the first character is outside ASCII. */
export function startsWithNonAscii(text: string): boolean {
  return text.length > 0 && text.charCodeAt(0) > 0x7f;
}

/** Whether the last character is ASCII punctuation. */
export function endsWithPunctuation(text: string): boolean {
  return text.length > 0 && asciiPunctuation.has(text[text.length - 1]!);
}

/** Collapse runs of whitespace to one space and trim. */
export function collapseWhitespace(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** Cross-shard exact-duplicate key (A.2 merge): lower-case, every non-alphanumeric character becomes a space. */
export function normalizeForExactMatch(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, " ")
    .trim();
}
