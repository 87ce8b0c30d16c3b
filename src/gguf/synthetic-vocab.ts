import { byteVocabTokens } from "./byte-vocab.js";

/**
 * A vocabulary of any size from the byte vocabulary: after its 354 tokens come lowercase "words" in order of length,
 * each once with and once without the leading "▁" ("▁a".."▁z", then "aa".."zz" and "▁aa".."▁zz", ...), until
 * `size` tokens. Every word's prefix one letter shorter is also a token, so SentencePiece-style merges reach each
 * one, and text tokenises into fewer, longer tokens as it does with a real vocabulary. For models of a real model's
 * exact shape and cost (e.g. 49,152 tokens like SmolLM2); the words mean nothing.
 */
export function syntheticVocabTokens(size: number): { tokens: string[]; types: number[]; scores: number[] } {
  const base = byteVocabTokens();
  if (!Number.isInteger(size) || size < base.tokens.length)
    throw new Error(`a vocabulary needs at least ${base.tokens.length} tokens (the byte vocabulary), got ${size}`);
  const tokens = [...base.tokens];
  const types = [...base.types];
  const scores = [...base.scores];
  const letters = "abcdefghijklmnopqrstuvwxyz";
  const add = (token: string) => {
    tokens.push(token);
    types.push(1);
    // Lower scores for later (longer) tokens, after the byte vocabulary's normal tokens.
    scores.push(-tokens.length);
  };
  let words = [...letters];
  for (const word of words) if (tokens.length < size) add(`\u2581${word}`);
  while (tokens.length < size) {
    const longer: string[] = [];
    for (const word of words) for (const letter of letters) longer.push(word + letter);
    for (const word of longer) {
      if (tokens.length < size) add(word);
      if (tokens.length < size) add(`\u2581${word}`);
    }
    words = longer;
  }
  return { tokens, types, scores };
}
