/**
 * Requests the model cannot take, refused with a 400 before they reach it: token ids outside the vocabulary, and
 * prompts (or prompt + max_tokens) longer than the context, as vLLM refuses them.
 */
import type { LanguageModel } from "../backends/language-model.js";
import { firstInvalidTokenId } from "../backends/llama-cpp/token-ids.js";
import { ContextLengthError } from "../errors/index.js";
import { HttpError } from "./openai-error.js";

/**
 * The 400 a client sees for a ContextLengthError from the model: the prompt alone is too long (`promptParam`), or
 * an explicit `max_tokens` leaves the prompt too little room. Clients do not retry a 400, and should not: the same
 * request never fits.
 */
export function contextLengthHttpError(error: ContextLengthError, promptParam: "prompt" | "messages"): HttpError {
  const { promptTokens, maxTokens, contextSize } = error;
  const room = Math.max(0, contextSize - promptTokens - 1);
  if (maxTokens !== undefined)
    return new HttpError(
      400,
      `'max_tokens' is too large: ${maxTokens}. This model's maximum context length is ${contextSize} tokens and your request has ${promptTokens} input tokens, which leaves room for ${room}; lower max_tokens or leave it out`,
      { param: "max_tokens", code: "context_length_exceeded" },
    );
  return new HttpError(
    400,
    `This model's maximum context length is ${contextSize} tokens, but your request has ${promptTokens} input tokens; shorten the ${promptParam === "prompt" ? "prompt" : "messages"}`,
    { param: promptParam, code: "context_length_exceeded" },
  );
}

/** Run `work`, turning a ContextLengthError into its 400. */
export async function answeringContextLength<T>(
  promptParam: "prompt" | "messages",
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ContextLengthError) throw contextLengthHttpError(error, promptParam);
    throw error;
  }
}

/** A 400 naming `param` unless every entry of `tokens` is a token id of the model (llama.cpp aborts on others). */
export function checkRequestTokenIds(model: LanguageModel, tokens: readonly number[], param: string): void {
  const { vocabularySize } = model.capabilities();
  const invalid = firstInvalidTokenId(tokens, vocabularySize);
  if (!invalid) return;
  throw new HttpError(
    400,
    `'${param}' holds ${String(invalid.value)} at position ${invalid.index}, which is not a token id of this model: expected integers from 0 to ${vocabularySize === undefined ? "the vocabulary size" : vocabularySize - 1}`,
    { param, code: "invalid_value" },
  );
}
