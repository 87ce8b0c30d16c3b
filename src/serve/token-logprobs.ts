/**
 * OpenAI-style `logprobs` objects (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) built from
 * `LanguageModel.score`. The echoed prompt is scored as `score("", [prompt])` (conditioned on BOS only; see
 * scoreEchoedPrompt for models without one), and its first token's log-probability is reported as null, as OpenAI does. Generated text is scored after generation
 * as `score(prompt, [text])`: the raw model distribution, before temperature, top-p and penalties.
 *
 * `top_logprobs` (requested with `logprobs: k`) holds, per position, the chosen token and the k most likely tokens
 * (up to k + 1 entries, as OpenAI and vLLM return them), from `score(..., { topLogprobs: k })`. A model that gives no
 * alternatives leaves a position null, unless the whole text is greedy (then the chosen token is the top-1).
 * Offsets count Unicode code points, as Python servers do.
 */
import type { LanguageModel, ScoreOptions, ScoreResult, TokenLogprob } from "../backends/language-model.js";
import { codePointLength } from "../backends/openai-compatible/echo-score.js";
import { HttpError } from "./openai-error.js";

export interface OpenAILogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

export function emptyLogprobs(): OpenAILogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/**
 * Offsets (in code points, from `base`) of each token of `text`. The tokens' own texts are used when they spell
 * `text` exactly; otherwise (a tokenizer that adds or merges spaces) each offset is the length of the detokenised
 * prefix, so every token still starts where its text does.
 */
async function tokenOffsets(model: LanguageModel, tokens: TokenLogprob[], text: string, base: number) {
  const offsets: number[] = [];
  if (tokens.map((token) => token.text).join("") === text) {
    let at = base;
    for (const token of tokens) {
      offsets.push(at);
      at += codePointLength(token.text);
    }
    return offsets;
  }
  const total = codePointLength(text);
  let previous = 0;
  for (let i = 0; i < tokens.length; i++) {
    const prefix = i === 0 ? "" : await model.detokenize(tokens.slice(0, i).map((token) => token.token));
    const at = Math.min(total, Math.max(previous, codePointLength(prefix)));
    offsets.push(base + at);
    previous = at;
  }
  return offsets;
}

/** The `logprobs` object for one scored text. `firstIsNull` blanks the first log-probability (echoed prompts). */
export async function logprobsOf(
  model: LanguageModel,
  score: ScoreResult,
  text: string,
  options: { base: number; firstIsNull: boolean; tokenIds: boolean },
): Promise<OpenAILogprobs> {
  const nameOf = (token: { token: number; text: string }) =>
    options.tokenIds && token.token >= 0 ? `token_id:${token.token}` : token.text;
  const names = score.tokens.map(nameOf);
  const topOf = (token: TokenLogprob, i: number): Record<string, number> | null => {
    if (options.firstIsNull && i === 0) return null;
    if (token.top) {
      const entries: Record<string, number> = { [names[i]!]: token.logprob };
      for (const alternative of token.top) entries[nameOf(alternative)] ??= alternative.logprob;
      return entries;
    }
    return score.isGreedy ? { [names[i]!]: token.logprob } : null;
  };
  return {
    tokens: names,
    token_logprobs: score.tokens.map((token, i) => (options.firstIsNull && i === 0 ? null : token.logprob)),
    top_logprobs: score.tokens.map(topOf),
    text_offset: await tokenOffsets(model, score.tokens, text, options.base),
  };
}

export function concatLogprobs(first: OpenAILogprobs, second: OpenAILogprobs): OpenAILogprobs {
  return {
    tokens: [...first.tokens, ...second.tokens],
    token_logprobs: [...first.token_logprobs, ...second.token_logprobs],
    top_logprobs: [...first.top_logprobs, ...second.top_logprobs],
    text_offset: [...first.text_offset, ...second.text_offset],
  };
}

/**
 * Log-probabilities of an echoed prompt, every token given the ones before it: `score("", [prompt])`, conditioned on
 * BOS. A model that adds no BOS (Qwen2's vocabulary, for one) has nothing to condition the first token on: that token
 * is listed (its log-probability is reported as null, as OpenAI does for every first token) and the rest is scored
 * given it.
 */
export async function scoreEchoedPrompt(
  model: LanguageModel,
  prompt: string,
  options: ScoreOptions,
): Promise<ScoreResult> {
  const plain = await model.tokenize(prompt);
  const withBos = await model.tokenize(prompt, { addBos: true });
  if (withBos.length > plain.length || plain.length === 0) return (await model.score("", [prompt], options))[0]!;
  const first = plain[0]!;
  const firstText = await model.detokenize([first]);
  const [rest] =
    firstText.length > 0 && prompt.startsWith(firstText)
      ? await model.score(firstText, [prompt.slice(firstText.length)], options)
      : [];
  const ids = rest ? [first, ...rest.tokens.map((token) => token.token)] : [];
  if (!rest || ids.length !== plain.length || ids.some((id, i) => id !== plain[i])) {
    throw new HttpError(
      400,
      "cannot echo log-probabilities for this prompt: the model adds no BOS token and the prompt's first token does not spell its start, so the rest cannot be scored after it. Leave out `echo` or `logprobs`.",
      { param: "echo" },
    );
  }
  return { ...rest, tokens: [{ token: first, text: firstText, logprob: 0 }, ...rest.tokens] };
}
