/**
 * The one interface every stage, evaluator and server uses to talk to a model: types, plus `completeAll`.
 * Base models are prompted with raw text (`complete`, `score`); `chat` exists for judge models.
 */

/** Why a completion stopped: a stop string / end-of-sequence, the token limit, or cancellation. */
export const finishReasons = ["stop", "length", "abort"] as const;
export type FinishReason = (typeof finishReasons)[number];

export interface TokenUsage {
  /** Prompt tokens sent to the model (counted once per request, as the OpenAI API does). */
  promptTokens: number;
  /** Tokens generated. */
  completionTokens: number;
  /** Prompt tokens that were actually evaluated (the rest came from a reused KV-cache prefix). Embedded only. */
  evaluatedPromptTokens?: number;
  /** Failed attempts that were retried before this answer came (HTTP backend); absent means none. */
  retries?: number;
}

/** An n-gram repetition penalty (Dromedary's uni/bi/tri/quad-token frequency penalties): for every n-gram already
 * generated whose first n-1 tokens equal the last n-1 generated tokens, subtract `penalty * count` from the
 * logit of its last token. */
export interface NgramPenalty {
  n: number;
  penalty: number;
}

export interface SamplingOptions {
  /** 0 means greedy. Default 1. */
  temperature?: number;
  /** Nucleus sampling mass. Default 1. */
  topP?: number;
  /** Default: no top-k. */
  topK?: number;
  /** Maximum new tokens. Default 256. */
  maxTokens?: number;
  /** Stop strings; the returned text is cut before the first one and does not include it. */
  stop?: string[];
  /** Seed for sampling; same seed + same prompt => same text on the embedded backend. */
  seed?: number;
  /** Added to the logit of each token id before sampling (OpenAI `logit_bias`). -100 effectively bans a token. */
  logitBias?: Record<number, number>;
  /** Optional GBNF grammar the output must match (embedded backend; where the server supports it). */
  grammar?: string;
  /** OpenAI-style frequency/presence penalties. */
  frequencyPenalty?: number;
  presencePenalty?: number;
  /** Dromedary's n-gram frequency penalties (generated tokens only). */
  ngramPenalties?: NgramPenalty[];
  /** Whether generation may stop at end-of-sequence. Default true. Stage 1 turns it off (EOS bias -100). */
  allowEos?: boolean;
  /**
   * When the prompt leaves less room in the context than `maxTokens`: "cap" generates what fits (finish reason
   * "length"); "refuse" throws a ContextLengthError before any work, as vLLM answers such a request with a 400.
   * Default "cap". A prompt that leaves no room at all is always a ContextLengthError. Embedded backend (a server
   * applies its own rule).
   */
  maxTokensOverflow?: "cap" | "refuse";
}

export interface CompletionRequest extends SamplingOptions {
  prompt: string;
  /** Number of samples for this prompt. Default 1. */
  n?: number;
}

export interface Completion {
  text: string;
  finishReason: FinishReason;
  /** Number of generated tokens. */
  tokenCount: number;
  /**
   * Ids of the generated tokens that make up `text` (a stop string's own tokens left out), from backends that know
   * them (the embedded one). Text that is not valid UTF-8 cannot be tokenised back into them.
   */
  tokens?: number[];
}

export interface CompletionResult {
  /** Position of the request in the array passed to `complete`. */
  index: number;
  completions: Completion[];
  usage: TokenUsage;
  /**
   * Options this backend could not apply to the request (e.g. n-gram penalties on a server, a grammar sent to a
   * server that may ignore it), one sentence each. Absent when every option was applied. Stages record them.
   */
  warnings?: string[];
}

/** Text generated so far by one sample, for streaming. */
export interface TextProgress {
  /** Position of the request in the array passed to `complete` (0 for `chat`). */
  index: number;
  /** Which of the request's `n` samples. */
  sample: number;
  /** All text the sample has produced so far that is certain to begin its final text (text that could still
   * become part of a stop string, or an unfinished UTF-8 character, is held back). Grows with each call. */
  text: string;
}

export interface CompleteOptions {
  signal?: AbortSignal;
  /**
   * Called as generation goes, for streaming. Optional for backends: one that cannot stream (the HTTP backend)
   * never calls it, so consumers take the final text from the result and use this only for early display.
   */
  onText?: (progress: TextProgress) => void;
}

export interface TokenLogprob {
  /** Token id; -1 when a server reported the token's text only. */
  token: number;
  text: string;
  logprob: number;
  /** The most likely tokens at this position, best first, when asked for with `ScoreOptions.topLogprobs`. */
  top?: Array<{ token: number; text: string; logprob: number }>;
}

export interface ScoreOptions extends CompleteOptions {
  /** Also give the k most likely tokens at each scored position (`TokenLogprob.top`). Default 0 (none). */
  topLogprobs?: number;
}

export interface ScoreResult {
  /** Sum of the log-probabilities of the continuation's tokens given the prompt. */
  logprob: number;
  /** Per-token log-probabilities of the continuation, in order. */
  tokens: TokenLogprob[];
  /** Whether every continuation token was the arg-max token (lm-evaluation-harness `is_greedy`). */
  isGreedy: boolean;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatResult {
  message: ChatMessage;
  finishReason: FinishReason;
  usage: TokenUsage;
  /** Options this backend could not apply (see CompletionResult.warnings). */
  warnings?: string[];
}

export interface Capabilities {
  /** `score` gives exact log-probabilities. */
  score: boolean;
  /** GBNF grammars are honoured. */
  grammar: boolean;
  /** `chat` is available. */
  chat: boolean;
  /** `complete` (raw text) is available. */
  complete: boolean;
  /** Dromedary n-gram penalties are honoured (otherwise ignored with a warning). */
  ngramPenalty: boolean;
  /** Context window in tokens. */
  maxContext: number;
  /** How many sequences the backend decodes at once. */
  parallel: number;
  /** Token ids run from 0 to vocabularySize - 1, where the backend knows its vocabulary (embedded). */
  vocabularySize?: number;
}

export interface TokenizeOptions {
  /** Prepend the model's BOS token when it uses one. Default false. */
  addBos?: boolean;
}

export interface LanguageModel {
  /** Stable identifier for provenance, e.g. `llama-cpp:models/m.gguf` or `openai:http://host/v1#name`. */
  readonly id: string;
  capabilities(): Capabilities;
  /**
   * Complete many raw-text prompts. Yields each result as soon as it finishes (not in request order;
   * use `index`). Prompts sharing a long prefix are cheap on backends that reuse the KV cache.
   */
  complete(requests: CompletionRequest[], options?: CompleteOptions): AsyncIterable<CompletionResult>;
  /**
   * Exact log-probabilities of each continuation given the prompt. Token alignment follows
   * lm-evaluation-harness: continuation tokens = tokenize(prompt + continuation) minus the tokens of
   * tokenize(prompt), so the boundary is tokenised as the model would see it.
   */
  score(prompt: string, continuations: string[], options?: ScoreOptions): Promise<ScoreResult[]>;
  /**
   * Log-probabilities of token ids after the token ids `context`, with no tokenisation: for reporting the tokens
   * `complete` generated (`Completion.tokens`) after its prompt (`tokenize(prompt, { addBos: true })`). Optional:
   * backends that see token ids (the embedded one).
   */
  scoreTokens?(context: number[], continuations: number[][], options?: ScoreOptions): Promise<ScoreResult[]>;
  tokenize(text: string, options?: TokenizeOptions): Promise<number[]>;
  detokenize(tokens: number[]): Promise<string>;
  countTokens(text: string): Promise<number>;
  chat(messages: ChatMessage[], options?: SamplingOptions & CompleteOptions): Promise<ChatResult>;
  /** Release engines, contexts and connections. */
  close(): Promise<void>;
}

/** Collect all results of `complete` in request order. */
export async function completeAll(
  model: LanguageModel,
  requests: CompletionRequest[],
  options?: CompleteOptions,
): Promise<CompletionResult[]> {
  const results: CompletionResult[] = new Array(requests.length);
  for await (const result of model.complete(requests, options)) results[result.index] = result;
  return results;
}

/** Requests to keep in flight: `given`, else the backend's parallelism, and at least one. */
export function requestConcurrency(backend: LanguageModel, given?: number): number {
  return Math.max(1, given ?? backend.capabilities().parallel ?? 1);
}
