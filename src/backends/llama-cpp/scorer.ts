import type { LlamaModel, Token } from "node-llama-cpp";
import { commonPrefixLength } from "./sequence-pool.js";

/** Prompt tokens with the model's BOS prepended (when the model uses one). */
export function tokenizeWithBos(model: LlamaModel, text: string): Token[] {
  const tokens = text.length > 0 ? model.tokenize(text, false) : [];
  const bos = model.tokens.bos;
  return model.tokens.shouldPrependBosToken && bos != null ? [bos, ...tokens] : tokens;
}

/**
 * Token alignment of a scored continuation, as lm-evaluation-harness does it: the continuation's tokens are
 * tokenize(prompt + continuation) after the tokens of tokenize(prompt), so the boundary is tokenised the way the
 * model sees the joint text. Where the joint encoding does not start with the prompt's encoding (a tokenizer that
 * merges across the boundary), the condition is the longest common prefix of the two and the continuation is
 * everything after it, so every scored token is one the model would actually read.
 */
export function alignContinuation(
  model: LlamaModel,
  prompt: string,
  continuation: string,
  /** `tokenizeWithBos(model, prompt)`, when the caller already has it. */
  context: readonly Token[] = tokenizeWithBos(model, prompt),
): { condition: Token[]; continuation: Token[] } {
  const whole = tokenizeWithBos(model, prompt + continuation);
  const boundary = commonPrefixLength(context, whole);
  return { condition: whole.slice(0, boundary), continuation: whole.slice(boundary) };
}
