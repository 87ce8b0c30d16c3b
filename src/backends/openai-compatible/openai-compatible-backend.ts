/**
 * A LanguageModel over any server with the OpenAI completions API (vLLM, SGLang, llama.cpp server, Ollama, TGI,
 * OpenAI, `selfalign serve`): raw prompts through `/v1/completions`, judges through `/v1/chat/completions`,
 * scoring through `echo` + `logprobs`, tokenisation through the `/tokenize` and `/detokenize` endpoints that vLLM
 * and llama.cpp server offer (or a local tokenizer model).
 *
 * Extra body fields, sent only when the option is used (strict servers such as api.openai.com reject them):
 * `top_k` (topK), `ignore_eos: true` (allowEos: false), `grammar` (llama.cpp server) and `guided_grammar` (vLLM)
 * for a GBNF grammar. Dromedary n-gram penalties have no server equivalent: ignored with one warning.
 */
import { readSecretEnv } from "../../config/env.js";
import { BackendError, CapabilityError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type {
  Capabilities,
  ChatMessage,
  ChatResult,
  CompleteOptions,
  CompletionRequest,
  CompletionResult,
  LanguageModel,
  SamplingOptions,
  ScoreOptions,
  ScoreResult,
  TokenizeOptions,
} from "../language-model.js";
import { runConcurrently } from "../run-concurrently.js";
import { scoreFromEcho } from "./echo-score.js";
import { EndpointPool } from "./endpoint-pool.js";
import { HttpClient, type RetryEvent } from "./http-client.js";
import {
  type CompletionsResponse,
  parseChatResponse,
  parseCompletionsResponse,
  parseDetokenizeResponse,
  parseModelsResponse,
  parseTokenizeResponse,
} from "./response-shapes.js";

export interface OpenAICompatibleBackendOptions {
  /** One or more base URLs ending in `/v1` (data-parallel replicas of the same model). */
  baseUrls: string[];
  /** The model name the server knows (`model` in each request). */
  model: string;
  /** Name of the environment variable holding the API key (sent as a bearer token). Default: no key. */
  apiKeyEnv?: string;
  /** Requests in flight per base URL. Default 8. */
  concurrencyPerEndpoint?: number;
  /** Per-attempt timeout. Default 120000 ms. */
  timeoutMs?: number;
  /** Retries after the first attempt on 408/409/429/5xx, network errors, timeouts and garbled answers. Default 5. */
  maxRetries?: number;
  /** First backoff; doubles per retry, with jitter. Default 500 ms. */
  initialBackoffMs?: number;
  /** Cap on one backoff, including a server's `retry-after`. Default 30000 ms. */
  maxBackoffMs?: number;
  /** Context window to report in `capabilities()`. Default 4096. */
  maxContext?: number;
  /** A local model with the same vocabulary, used for tokenize/detokenize/countTokens instead of the server. */
  tokenizer?: LanguageModel;
  /**
   * Ask for token ids in log-probability answers (`return_tokens_as_token_ids`, understood by vLLM and
   * `selfalign serve`) so `score` reports token ids; otherwise ids are -1. Default false.
   */
  returnTokenIds?: boolean;
  /**
   * How `score` asks for log-probabilities: "echo" (`echo: true, logprobs: 1`; OpenAI legacy, vLLM, `selfalign
   * serve`) or "prompt-logprobs" (vLLM's `prompt_logprobs: 1`). Default "echo". llama.cpp's server gives no
   * log-probabilities for prompt tokens, so it cannot score either way (a CapabilityError says so).
   */
  scoreMethod?: "echo" | "prompt-logprobs";
  /** Extra fields merged into every completions and chat request body (server-specific options). */
  extraBody?: Record<string, unknown>;
  /** Called before each retry with the delay chosen (backoff or the server's `retry-after`) and the reason. */
  onRetry?: (event: RetryEvent) => void;
  /** Receives warnings (unsupported options), each kind once, and a `request-retry` event before each retry. */
  onProgress?: ProgressListener;
}

export interface OpenAICompatibleBackend extends LanguageModel {
  /** The models a server lists (`GET /v1/models`), with `max_model_len` where the server gives it (vLLM). */
  models(): Promise<Array<{ id: string; maxModelLen?: number }>>;
  /** Requests sent to each base URL so far (attempts, including retries). */
  requestCounts(): Array<{ baseUrl: string; sent: number }>;
  /**
   * Retries made so far by every request of this backend (scoring and tokenising included). The retries behind
   * one completion or chat reply are also in its `usage.retries`.
   */
  retryCount(): number;
}

function positiveInteger(value: number, field: string): number {
  if (!Number.isInteger(value) || value <= 0)
    throw new ConfigError(`${field} must be a positive integer, got ${value}`, { field });
  return value;
}

function nonNegative(value: number, field: string): number {
  if (!Number.isFinite(value) || value < 0)
    throw new ConfigError(`${field} must be a number >= 0, got ${value}`, { field });
  return value;
}

export function createOpenAICompatibleBackend(options: OpenAICompatibleBackendOptions): OpenAICompatibleBackend {
  if (!Array.isArray(options.baseUrls) || options.baseUrls.length === 0)
    throw new ConfigError("baseUrls must list at least one URL, e.g. http://127.0.0.1:8000/v1", { field: "baseUrls" });
  for (const url of options.baseUrls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError(`baseUrls: "${url}" is not a URL; expected e.g. http://127.0.0.1:8000/v1`, {
        field: "baseUrls",
      });
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
      throw new ConfigError(`baseUrls: "${url}" must start with http:// or https://`, { field: "baseUrls" });
  }
  if (!options.model) throw new ConfigError("model must name the model the server serves", { field: "model" });
  const concurrency = positiveInteger(options.concurrencyPerEndpoint ?? 8, "concurrencyPerEndpoint");
  const apiKey = options.apiKeyEnv
    ? readSecretEnv(options.apiKeyEnv, { required: true, purpose: "the OpenAI-compatible backend" })
    : undefined;
  const pool = new EndpointPool(options.baseUrls, concurrency);
  const client = new HttpClient(
    pool,
    {
      timeoutMs: positiveInteger(options.timeoutMs ?? 120_000, "timeoutMs"),
      maxRetries: Math.floor(nonNegative(options.maxRetries ?? 5, "maxRetries")),
      initialBackoffMs: nonNegative(options.initialBackoffMs ?? 500, "initialBackoffMs"),
      maxBackoffMs: nonNegative(options.maxBackoffMs ?? 30_000, "maxBackoffMs"),
    },
    apiKey,
    (event) => {
      options.onRetry?.(event);
      options.onProgress?.({ type: "request-retry", ...event });
    },
  );
  return new OpenAICompatibleModel(options, client, pool);
}

class OpenAICompatibleModel implements OpenAICompatibleBackend {
  readonly id: string;
  readonly #options: OpenAICompatibleBackendOptions;
  readonly #client: HttpClient;
  readonly #pool: EndpointPool;
  readonly #warned = new Set<string>();
  /** Whether the server rejected `max_tokens: 0` with echo; then scoring asks for 1 token and ignores it. */
  #scoreMaxTokens = 0;
  #closed = false;

  constructor(options: OpenAICompatibleBackendOptions, client: HttpClient, pool: EndpointPool) {
    this.#options = options;
    this.#client = client;
    this.#pool = pool;
    this.id = `openai:${pool.endpoints.map((endpoint) => endpoint.baseUrl).join(",")}#${options.model}`;
  }

  capabilities(): Capabilities {
    return {
      score: true,
      grammar: true,
      chat: true,
      complete: true,
      ngramPenalty: false,
      maxContext: this.#options.maxContext ?? 4096,
      parallel: this.#pool.capacity,
    };
  }

  retryCount(): number {
    return this.#client.retries;
  }

  requestCounts(): Array<{ baseUrl: string; sent: number }> {
    return this.#pool.endpoints.map((endpoint) => ({ baseUrl: endpoint.baseUrl, sent: endpoint.sent }));
  }

  async models(): Promise<Array<{ id: string; maxModelLen?: number }>> {
    this.#checkOpen();
    return this.#client.request({ path: "/models", method: "GET", parse: parseModelsResponse });
  }

  #warnOnce(key: string, text: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#options.onProgress?.({ type: "message", level: "warn", text });
  }

  #checkOpen(): void {
    if (this.#closed) throw new BackendError(`${this.id} is closed; create a new backend to send more requests`);
  }

  /** Request body fields for the sampling options, in the OpenAI API's names plus documented extensions. */
  #samplingBody(sampling: SamplingOptions): Record<string, unknown> {
    const body: Record<string, unknown> = {
      temperature: sampling.temperature ?? 1,
      top_p: sampling.topP ?? 1,
      max_tokens: sampling.maxTokens ?? 256,
    };
    if (sampling.stop && sampling.stop.length > 0) body.stop = sampling.stop;
    if (sampling.seed !== undefined) body.seed = sampling.seed;
    if (sampling.logitBias && Object.keys(sampling.logitBias).length > 0) body.logit_bias = sampling.logitBias;
    if (sampling.frequencyPenalty !== undefined) body.frequency_penalty = sampling.frequencyPenalty;
    if (sampling.presencePenalty !== undefined) body.presence_penalty = sampling.presencePenalty;
    if (sampling.topK !== undefined) body.top_k = sampling.topK;
    if (sampling.allowEos === false) body.ignore_eos = true;
    if (sampling.grammar !== undefined) {
      this.#warnOnce(
        "grammar",
        `${this.id}: grammars are sent as \`grammar\` (llama.cpp server) and \`guided_grammar\` (vLLM); other servers ignore or reject them`,
      );
      body.grammar = sampling.grammar;
      body.guided_grammar = sampling.grammar;
    }
    if (sampling.ngramPenalties && sampling.ngramPenalties.length > 0) {
      this.#warnOnce(
        "ngram",
        `${this.id}: n-gram penalties are not supported by OpenAI-compatible servers and are ignored; ` +
          "use frequencyPenalty/presencePenalty or the embedded backend",
      );
    }
    return { ...body, ...this.#options.extraBody };
  }

  complete(requests: CompletionRequest[], options: CompleteOptions = {}): AsyncIterable<CompletionResult> {
    this.#checkOpen();
    return runConcurrently(requests.length, this.#pool.capacity, options.signal, (index, signal) =>
      this.#completeOne(requests[index]!, index, signal),
    );
  }

  async #completeOne(request: CompletionRequest, index: number, signal: AbortSignal): Promise<CompletionResult> {
    const n = request.n ?? 1;
    const { value: response, retries } = await this.#client.requestCounted({
      path: "/completions",
      body: { model: this.#options.model, prompt: request.prompt, n, ...this.#samplingBody(request) },
      parse: parseCompletionsResponse,
      signal,
    });
    if (response.choices.length !== n) {
      throw new BackendError(
        `${this.id}: asked for n=${n} completions, the server returned ${response.choices.length}; ` +
          "the server may not support `n` — send n=1 requests instead",
      );
    }
    const completionTokens = response.usage?.completionTokens ?? 0;
    return {
      index,
      completions: response.choices.map((choice, i) => ({
        text: choice.text,
        finishReason: choice.finishReason,
        tokenCount: choice.logprobs ? choice.logprobs.tokens.length : splitEvenly(completionTokens, n, i),
      })),
      usage: { promptTokens: response.usage?.promptTokens ?? 0, completionTokens, ...(retries > 0 ? { retries } : {}) },
    };
  }

  async score(prompt: string, continuations: string[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    this.#checkOpen();
    const top = options.topLogprobs ?? 0;
    const results: ScoreResult[] = new Array(continuations.length);
    for await (const result of runConcurrently(
      continuations.length,
      this.#pool.capacity,
      options.signal,
      async (index, signal) => ({ index, score: await this.#scoreOne(prompt, continuations[index]!, signal, top) }),
    ))
      results[result.index] = result.score;
    return results;
  }

  async #scoreOne(prompt: string, continuation: string, signal: AbortSignal, top: number): Promise<ScoreResult> {
    const url = this.#pool.endpoints[0]!.baseUrl;
    const method = this.#options.scoreMethod ?? "echo";
    // vLLM's prompt_logprobs with k > 1 hides which entry is the prompt's own token when it is among the top k, so
    // the token comes from a k = 1 request and the alternatives from a second one.
    const send = (maxTokens: number, k = method === "echo" ? Math.max(1, top) : 1): Promise<CompletionsResponse> =>
      this.#client.request({
        path: "/completions",
        body: {
          model: this.#options.model,
          prompt: prompt + continuation,
          ...(method === "echo"
            ? { echo: true, logprobs: k, max_tokens: maxTokens }
            : { prompt_logprobs: k, max_tokens: 1 }),
          temperature: 0,
          ...(this.#options.returnTokenIds ? { return_tokens_as_token_ids: true } : {}),
        },
        parse: parseCompletionsResponse,
        signal,
      });
    let response: CompletionsResponse;
    try {
      response = await send(this.#scoreMaxTokens);
    } catch (error) {
      if (!(error instanceof BackendError) || error.retryable) throw error;
      const status = error.statusCode;
      if (status === 404 || status === 405 || status === 501) {
        throw new CapabilityError(
          `${url} has no /completions endpoint (HTTP ${status}), so it cannot score text (chat-only server). ` +
            "Use the embedded backend (`llama-cpp:<model.gguf>`) or serve the model with vLLM.",
          { statusCode: status, cause: error },
        );
      }
      if ((status !== 400 && status !== 422) || this.#scoreMaxTokens !== 0) throw this.#scoreRejected(error);
      // Some servers reject max_tokens=0; ask for one token and ignore it.
      try {
        response = await send(1);
        this.#scoreMaxTokens = 1;
      } catch (retryError) {
        if (retryError instanceof BackendError && !retryError.retryable) throw this.#scoreRejected(retryError);
        throw retryError;
      }
    }
    const choice = response.choices[0];
    if (!choice) throw new BackendError(`${url} returned no choices for a scoring request`, { retryable: true });
    const alternatives =
      method === "prompt-logprobs" && top > 1 ? (await send(1, top)).choices[0]?.promptLogprobs : undefined;
    return scoreFromEcho(choice, prompt, continuation, url, top, alternatives ?? undefined);
  }

  #scoreRejected(error: BackendError): Error {
    const status = error.statusCode;
    if (status === 400 || status === 422)
      return new CapabilityError(
        `${error.message} — the server refused \`echo: true\` with \`logprobs\`, so it cannot score text. ` +
          "Use the embedded backend (`llama-cpp:<model.gguf>`) or serve the model with vLLM.",
        { statusCode: status, cause: error },
      );
    return error;
  }

  async tokenize(text: string, options: TokenizeOptions = {}): Promise<number[]> {
    this.#checkOpen();
    if (this.#options.tokenizer) return this.#options.tokenizer.tokenize(text, options);
    const addBos = options.addBos ?? false;
    return this.#client.request({
      path: "/tokenize",
      root: true,
      // llama.cpp server reads `content`/`add_special`, vLLM reads `prompt`/`add_special_tokens`.
      body: {
        model: this.#options.model,
        content: text,
        prompt: text,
        add_special: addBos,
        add_special_tokens: addBos,
      },
      parse: parseTokenizeResponse,
    });
  }

  async detokenize(tokens: number[]): Promise<string> {
    this.#checkOpen();
    if (this.#options.tokenizer) return this.#options.tokenizer.detokenize(tokens);
    return this.#client.request({
      path: "/detokenize",
      root: true,
      body: { model: this.#options.model, tokens },
      parse: parseDetokenizeResponse,
    });
  }

  async countTokens(text: string): Promise<number> {
    if (this.#options.tokenizer) return this.#options.tokenizer.countTokens(text);
    return (await this.tokenize(text)).length;
  }

  async chat(messages: ChatMessage[], options: SamplingOptions & CompleteOptions = {}): Promise<ChatResult> {
    this.#checkOpen();
    const { signal, ...sampling } = options;
    const { value: response, retries } = await this.#client.requestCounted({
      path: "/chat/completions",
      body: { model: this.#options.model, messages, ...this.#samplingBody(sampling) },
      parse: parseChatResponse,
      signal,
    });
    return {
      message: { role: "assistant", content: response.content },
      finishReason: response.finishReason,
      usage: {
        promptTokens: response.usage?.promptTokens ?? 0,
        completionTokens: response.usage?.completionTokens ?? 0,
        ...(retries > 0 ? { retries } : {}),
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

/** Share of `total` for item `i` of `n`, so the shares sum to `total` (per-choice counts the server did not give). */
function splitEvenly(total: number, n: number, i: number): number {
  return Math.floor(total / n) + (i < total % n ? 1 : 0);
}
