/**
 * The parts of OpenAI-compatible responses the backend reads, checked by hand (servers differ in what they add;
 * we only insist on what we use). Each parser throws ResponseShapeError, which the client treats as retryable.
 */
import type { FinishReason } from "../language-model.js";
import { ResponseShapeError } from "./http-client.js";

export interface CompletionLogprobs {
  tokens: string[];
  tokenLogprobs: Array<number | null>;
  topLogprobs: Array<Record<string, number> | null> | null;
  textOffset: number[] | null;
}

export interface CompletionChoice {
  index: number;
  text: string;
  finishReason: FinishReason;
  logprobs: CompletionLogprobs | null;
  /** vLLM's `prompt_logprobs`: one entry per prompt token (the first is null), token id -> {logprob, rank, decoded_token}. */
  promptLogprobs: Array<Record<string, PromptLogprobEntry> | null> | null;
  /** The prompt's token ids as the server encoded it (vLLM and SGLang with `return_token_ids: true`). */
  promptTokenIds: number[] | null;
}

export interface PromptLogprobEntry {
  logprob: number;
  rank?: number;
  decoded_token?: string;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface CompletionsResponse {
  choices: CompletionChoice[];
  usage: Usage | null;
}

export interface ChatResponse {
  content: string;
  finishReason: FinishReason;
  usage: Usage | null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(expected: string, got: unknown): never {
  const shown = JSON.stringify(got);
  throw new ResponseShapeError(`expected ${expected}, got ${shown === undefined ? "nothing" : shown.slice(0, 120)}`);
}

export function finishReasonOf(value: unknown): FinishReason {
  return value === "length" ? "length" : "stop";
}

function parseUsage(value: unknown): Usage | null {
  if (!isObject(value)) return null;
  const prompt = typeof value.prompt_tokens === "number" ? value.prompt_tokens : 0;
  const completion = typeof value.completion_tokens === "number" ? value.completion_tokens : 0;
  return { promptTokens: prompt, completionTokens: completion };
}

function parseLogprobs(value: unknown): CompletionLogprobs | null {
  if (!isObject(value)) return null;
  const tokens = value.tokens;
  const tokenLogprobs = value.token_logprobs;
  if (!Array.isArray(tokens) || !Array.isArray(tokenLogprobs)) return null;
  if (tokens.length !== tokenLogprobs.length)
    fail("logprobs.tokens and logprobs.token_logprobs of equal length", value);
  if (!tokens.every((token) => typeof token === "string")) fail("logprobs.tokens to be strings", tokens);
  if (!tokenLogprobs.every((lp) => lp === null || typeof lp === "number"))
    fail("logprobs.token_logprobs to be numbers or null", tokenLogprobs);
  const textOffset = Array.isArray(value.text_offset) ? value.text_offset : null;
  if (textOffset && !textOffset.every((offset) => typeof offset === "number"))
    fail("logprobs.text_offset to be numbers", textOffset);
  const topLogprobs = Array.isArray(value.top_logprobs) ? value.top_logprobs : null;
  return {
    tokens: tokens as string[],
    tokenLogprobs: tokenLogprobs as Array<number | null>,
    topLogprobs: topLogprobs as Array<Record<string, number> | null> | null,
    textOffset: textOffset as number[] | null,
  };
}

export function parseCompletionsResponse(json: unknown): CompletionsResponse {
  if (!isObject(json) || !Array.isArray(json.choices)) fail("an object with a `choices` array", json);
  const choices = (json.choices as unknown[]).map((choice, position): CompletionChoice => {
    if (!isObject(choice) || typeof choice.text !== "string") fail("choices[i].text to be a string", choice);
    return {
      index: typeof choice.index === "number" ? choice.index : position,
      text: choice.text as string,
      finishReason: finishReasonOf(choice.finish_reason),
      logprobs: parseLogprobs(choice.logprobs),
      promptLogprobs: Array.isArray(choice.prompt_logprobs)
        ? (choice.prompt_logprobs as CompletionChoice["promptLogprobs"])
        : null,
      promptTokenIds:
        Array.isArray(choice.prompt_token_ids) && choice.prompt_token_ids.every((id) => Number.isInteger(id))
          ? (choice.prompt_token_ids as number[])
          : null,
    };
  });
  choices.sort((a, b) => a.index - b.index);
  return { choices, usage: parseUsage(json.usage) };
}

export function parseChatResponse(json: unknown): ChatResponse {
  if (!isObject(json) || !Array.isArray(json.choices) || json.choices.length === 0)
    fail("an object with a non-empty `choices` array", json);
  const choice = (json.choices as unknown[])[0];
  if (!isObject(choice) || !isObject(choice.message)) fail("choices[0].message to be an object", choice);
  const content = (choice.message as Record<string, unknown>).content;
  if (typeof content !== "string" && content !== null) fail("choices[0].message.content to be a string", content);
  return { content: content ?? "", finishReason: finishReasonOf(choice.finish_reason), usage: parseUsage(json.usage) };
}

/** `/tokenize` of llama.cpp server (`{tokens}`) and vLLM (`{tokens, count, max_model_len}`). */
export function parseTokenizeResponse(json: unknown): number[] {
  if (!isObject(json) || !Array.isArray(json.tokens)) fail("an object with a `tokens` array", json);
  const tokens = (json.tokens as unknown[]).map((token) =>
    // llama.cpp server returns {id, piece} objects when asked for pieces
    isObject(token) && typeof token.id === "number" ? token.id : token,
  );
  if (!tokens.every((token) => Number.isInteger(token))) fail("integer token ids", json.tokens);
  return tokens as number[];
}

/** `/detokenize` of llama.cpp server (`{content}`), vLLM (`{prompt}`) and SGLang (`{text}`). */
export function parseDetokenizeResponse(json: unknown): string {
  if (isObject(json)) {
    if (typeof json.content === "string") return json.content;
    if (typeof json.prompt === "string") return json.prompt;
    if (typeof json.text === "string") return json.text;
  }
  return fail("an object with a `content` (llama.cpp), `prompt` (vLLM) or `text` (SGLang) string", json);
}

/** One entry of `/v1/models`, with what servers add to OpenAI's shape. */
export interface ServedModel {
  id: string;
  /** `owned_by`: "vllm", "sglang", "llamacpp", "selfalign", "openai", ... */
  ownedBy?: string;
  /** vLLM and SGLang: `max_model_len`. */
  maxModelLen?: number;
  /** llama.cpp server and `selfalign serve`: `meta.n_ctx` (the serving context) and `meta.n_ctx_train`. */
  metaContext?: number;
  metaTrainContext?: number;
}

const positiveNumber = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isInteger(value) && value > 0 ? value : undefined;

/** `/v1/models`: the ids served, with their context windows where the server says. */
export function parseModelsResponse(json: unknown): ServedModel[] {
  if (!isObject(json) || !Array.isArray(json.data)) fail("an object with a `data` array", json);
  return (json.data as unknown[]).map((entry) => {
    if (!isObject(entry) || typeof entry.id !== "string") fail("data[i].id to be a string", entry);
    const meta = isObject(entry.meta) ? entry.meta : {};
    const model: ServedModel = { id: entry.id as string };
    if (typeof entry.owned_by === "string") model.ownedBy = entry.owned_by;
    const maxModelLen = positiveNumber(entry.max_model_len);
    if (maxModelLen !== undefined) model.maxModelLen = maxModelLen;
    const metaContext = positiveNumber(meta.n_ctx);
    if (metaContext !== undefined) model.metaContext = metaContext;
    const metaTrainContext = positiveNumber(meta.n_ctx_train);
    if (metaTrainContext !== undefined) model.metaTrainContext = metaTrainContext;
    return model;
  });
}

/** vLLM `GET /version`: `{version}`. */
export function parseVersionResponse(json: unknown): string {
  if (!isObject(json) || typeof json.version !== "string") fail("an object with a `version` string", json);
  return (json as { version: string }).version;
}

/** llama.cpp server `GET /props`: the per-slot context, `default_generation_settings.n_ctx`. */
export function parsePropsContext(json: unknown): number | undefined {
  if (!isObject(json)) fail("an object", json);
  const settings = (json as Record<string, unknown>).default_generation_settings;
  return isObject(settings) ? positiveNumber(settings.n_ctx) : undefined;
}
