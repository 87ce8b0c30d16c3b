import type { ControlledEvaluateInputItem, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { BackendError, throwIfAborted } from "../../errors/index.js";
import type { ScoreResult } from "../language-model.js";
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

/**
 * Exact log-probabilities on a dedicated sequence (flash attention off, F32 KV cache). The evaluated prefix stays
 * in the KV cache, so continuations of one prompt, and later calls with the same prompt, evaluate only what differs.
 * Continuations are aligned to tokens with `alignContinuation`, then scored by `scoreTokensOnSequence`.
 */
export async function scoreOnSequence(
  sequence: LlamaContextSequence,
  prompt: string,
  continuations: readonly string[],
  signal?: AbortSignal,
  topLogprobs = 0,
): Promise<ScoreResult[]> {
  const model = sequence.model;
  const results: ScoreResult[] = [];
  const context = tokenizeWithBos(model, prompt);
  for (const text of continuations) {
    throwIfAborted(signal);
    const { condition, continuation } = alignContinuation(model, prompt, text, context);
    results.push(await scoreTokensOnSequence(sequence, condition, continuation, topLogprobs));
  }
  return results;
}

/**
 * Log-probabilities of the token ids `continuation` after the token ids `condition`, with no tokenisation: what a
 * server reports for the tokens it generated (text that is not valid UTF-8 would not survive a round trip).
 * log p(t) = logit(t) - max logit - log(sum exp(logit - max)), from controlledEvaluate's filtered logits
 * (`includeTop: 1` gives the max; `includeMax` is broken in node-llama-cpp 3.22.1) and `totalLogitWeight`.
 * With `topLogprobs` k > 0, each token also gets the k most likely tokens at its position (`includeTop: k`).
 */
export async function scoreTokensOnSequence(
  sequence: LlamaContextSequence,
  condition: readonly Token[],
  continuation: readonly Token[],
  topLogprobs = 0,
): Promise<ScoreResult> {
  const model = sequence.model;
  if (continuation.length === 0) return { logprob: 0, tokens: [], isGreedy: true };
  if (condition.length === 0)
    throw new BackendError(
      "cannot score from an empty prompt on a model without a BOS token: expected at least one token to condition on. Give a non-empty prompt.",
    );
  const whole = [...condition, ...continuation];
  if (whole.length > sequence.contextSize)
    throw new BackendError(
      `prompt + continuation has ${whole.length} tokens but the scoring context holds ${sequence.contextSize}: expected fewer. Shorten the prompt or raise contextSize.`,
    );
  // Keep the cached prefix, but evaluate at least the last condition token: its logits score the first token.
  const keep = Math.min(commonPrefixLength(sequence.contextTokens, whole), condition.length - 1);
  if (keep < sequence.nextTokenIndex)
    await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
  const items: ControlledEvaluateInputItem[] = [];
  for (let i = keep; i < whole.length - 1; i++) {
    const token = whole[i] as Token;
    if (i < condition.length - 1) items.push(token);
    else {
      const target = whole[i + 1] as Token;
      items.push([
        token,
        {
          generateNext: {
            logits: { filter: { tokens: [target], includeTop: Math.max(1, topLogprobs) } },
            totalLogitWeight: true,
          },
        },
      ]);
    }
  }
  const evaluated = await sequence.controlledEvaluate(items);
  const tokens: ScoreResult["tokens"] = [];
  let isGreedy = true;
  let logprob = 0;
  for (let j = 0; j < continuation.length; j++) {
    const target = continuation[j] as Token;
    const index = condition.length - 1 - keep + j;
    const next = evaluated[index]?.next;
    const logits = next?.logits;
    const total = next?.totalLogitWeight;
    const logit = logits?.get(target);
    if (!logits || total === undefined || logit === undefined)
      throw new BackendError(
        `llama.cpp returned no logits for continuation token ${j} (expected filtered logits and totalLogitWeight from controlledEvaluate).`,
      );
    let max = Number.NEGATIVE_INFINITY;
    for (const value of logits.values()) if (value > max) max = value;
    const value = logit - max - Math.log(total);
    if (logit < max) isGreedy = false;
    logprob += value;
    const before = whole.slice(Math.max(0, condition.length + j - 8), condition.length + j);
    const scored: ScoreResult["tokens"][number] = {
      token: target,
      text: model.detokenize([target], false, before),
      logprob: value,
    };
    if (topLogprobs > 0)
      // The filter returns the top k plus the target; when the target is not among the top k it ranks below them.
      scored.top = [...logits.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, topLogprobs)
        .map(([token, tokenLogit]) => ({
          token,
          text: model.detokenize([token], false, before),
          logprob: tokenLogit - max - Math.log(total),
        }));
    tokens.push(scored);
  }
  return { logprob, tokens, isGreedy };
}
