/**
 * Token ids from outside (a client's prompt, a detokenize request) are checked here before they reach llama.cpp,
 * which aborts the whole process on an id outside the vocabulary.
 */
import type { LlamaModel } from "node-llama-cpp";
import { ConfigError } from "../../errors/index.js";

/** Number of tokens in the model's vocabulary, from its GGUF metadata (undefined when not recorded). */
export function vocabularySizeOf(model: LlamaModel): number | undefined {
  const metadata = model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: unknown } } } | undefined;
  const tokens = metadata?.tokenizer?.ggml?.tokens;
  return Array.isArray(tokens) && tokens.length > 0 ? tokens.length : undefined;
}

/** The first entry of `tokens` that is not a token id of a vocabulary of `vocabularySize` tokens, or undefined. */
export function firstInvalidTokenId(
  tokens: readonly unknown[],
  vocabularySize: number | undefined,
): { index: number; value: unknown } | undefined {
  for (let index = 0; index < tokens.length; index++) {
    const value = tokens[index];
    if (
      typeof value !== "number" ||
      !Number.isInteger(value) ||
      value < 0 ||
      (vocabularySize !== undefined && value >= vocabularySize)
    )
      return { index, value };
  }
  return undefined;
}

/** Throw a ConfigError naming `field` unless every entry of `tokens` is a token id of this vocabulary. */
export function checkTokenIds(tokens: readonly unknown[], vocabularySize: number | undefined, field: string): void {
  const invalid = firstInvalidTokenId(tokens, vocabularySize);
  if (!invalid) return;
  const range = vocabularySize === undefined ? "a non-negative integer" : `an integer from 0 to ${vocabularySize - 1}`;
  throw new ConfigError(
    `entry ${invalid.index} is ${JSON.stringify(invalid.value) ?? String(invalid.value)}, not a token id of this model: expected ${range}. Use tokenize to find token ids`,
    { field },
  );
}
