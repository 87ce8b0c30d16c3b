/**
 * ROUGE-L exactly as Google's `rouge_score` computes it with its default tokenizer and no stemmer:
 * lower-case, every character outside [a-z0-9] becomes a space, split on whitespace, then the LCS F-measure.
 */

/** `rouge_score`'s default tokenizer (no stemming). */
export function rougeTokenize(text: string): string[] {
  const normalised = text.toLowerCase().replace(/[^a-z0-9]+/g, " ");
  const tokens: string[] = [];
  for (const token of normalised.split(" ")) if (token.length > 0) tokens.push(token);
  return tokens;
}

/** Length of the longest common subsequence of two token sequences (dynamic programming, O(n·m) time, O(m) memory). */
export function lcsLength<T>(a: readonly T[], b: readonly T[]): number {
  if (a.length === 0 || b.length === 0) return 0;
  const row = new Int32Array(b.length + 1);
  for (let i = 0; i < a.length; i++) {
    let diagonal = 0;
    const tokenA = a[i];
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = tokenA === b[j - 1] ? diagonal + 1 : Math.max(above, row[j - 1]!);
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/**
 * The F-measure of an LCS of length `lcs` between sequences of `lengthA` and `lengthB` tokens, computed with the
 * same floating-point operations as `rouge_score` (precision, recall, then 2PR/(P+R)) so threshold decisions agree
 * bit for bit. Symmetric in its two lengths. 0 when either sequence is empty.
 */
export function lcsFMeasure(lcs: number, lengthA: number, lengthB: number): number {
  if (lengthA === 0 || lengthB === 0 || lcs === 0) return 0;
  const precision = lcs / lengthB;
  const recall = lcs / lengthA;
  return (2 * precision * recall) / (precision + recall);
}

/** ROUGE-L F-measure of two pre-tokenised sequences. */
export function rougeLTokens(a: readonly string[], b: readonly string[]): number {
  return lcsFMeasure(lcsLength(a, b), a.length, b.length);
}

/** ROUGE-L F-measure between two texts (symmetric; 0 when either has no tokens). */
export function rougeL(a: string, b: string): number {
  return rougeLTokens(rougeTokenize(a), rougeTokenize(b));
}
