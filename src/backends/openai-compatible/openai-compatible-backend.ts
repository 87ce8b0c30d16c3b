/**
 * A LanguageModel over any server with the OpenAI completions API (vLLM, SGLang, llama.cpp server, Ollama, TGI,
 * OpenAI, `selfalign serve`): raw prompts through `/v1/completions`, judges through `/v1/chat/completions`,
 * scoring through `echo` + `logprobs` aligned by token count (see echo-score.ts), tokenisation through the
 * `/tokenize` and `/detokenize` endpoints that vLLM, SGLang and llama.cpp server offer (or a local tokenizer model).
 *
 * The server's kind and context window are read from `/v1/models` (and vLLM's `/version`, llama.cpp's `/props`;
 * see server-info.ts) when the config does not say. Extra body fields, sent only when the option is used (strict
 * servers such as api.openai.com reject them): `top_k` (topK), `ignore_eos: true` (allowEos: false), and the
 * grammar in the field the server reads. Dromedary n-gram penalties have no server equivalent: they are not
 * applied, and each result says so in `warnings` (and a warning goes to onProgress once).
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
import {
  continuationStart,
  type EchoedText,
  echoedFromLogprobs,
  echoedFromPromptLogprobs,
  emptyPromptError,
  noLogprobsError,
  type PromptReference,
  scoreFromEcho,
} from "./echo-score.js";
import { EndpointPool } from "./endpoint-pool.js";
import { HttpClient, type RetryEvent } from "./http-client.js";
import {
  type CompletionsResponse,
  parseChatResponse,
  parseCompletionsResponse,
  parseDetokenizeResponse,
  parseModelsResponse,
  parseTokenizeResponse,
  type ServedModel,
} from "./response-shapes.js";
import { detectServerInfo, grammarFields, type ServerInfo, type ServerKind } from "./server-info.js";

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
  /**
   * Context window in tokens, as `capabilities().maxContext`. Default: what the server reports in `/v1/models`
   * (vLLM `max_model_len`, llama.cpp server `/props` n_ctx) once `serverInfo()` has run (`createBackend` runs it),
   * else 4096.
   */
  contextSize?: number;
  /** Older name of `contextSize`. */
  maxContext?: number;
  /** The server's kind (which grammar field it reads); default: detected from `/v1/models` and `/version`. */
  serverKind?: ServerKind;
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
  /** The models a server lists (`GET /v1/models`), with their context windows where the server gives them. */
  models(): Promise<ServedModel[]>;
  /**
   * The server's kind, version and context window (asked once; a failed attempt is asked again next time). After
   * it, `capabilities()` reports the server's context and whether grammars are honoured.
   */
  serverInfo(): Promise<ServerInfo>;
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
  if (options.contextSize !== undefined) positiveInteger(options.contextSize, "contextSize");
  if (options.maxContext !== undefined) positiveInteger(options.maxContext, "maxContext");
  if (
    options.contextSize !== undefined &&
    options.maxContext !== undefined &&
    options.contextSize !== options.maxContext
  )
    throw new ConfigError(
      `contextSize (${options.contextSize}) and maxContext (${options.maxContext}) disagree; give only contextSize`,
      { field: "contextSize" },
    );
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

/** The tokens of a scored prompt alone: token ids from a tokenizer, or the server's echo of it. */
type PromptTokens = { kind: "ids"; ids: number[] } | { kind: "echo"; echoed: EchoedText };

class OpenAICompatibleModel implements OpenAICompatibleBackend {
  readonly id: string;
  readonly #options: OpenAICompatibleBackendOptions;
  readonly #client: HttpClient;
  readonly #pool: EndpointPool;
  readonly #warned = new Set<string>();
  /** Whether the server rejected `max_tokens: 0` with echo; then scoring asks for 1 token and ignores it. */
  #scoreMaxTokens = 0;
  /** False once the server answered that it has no `/tokenize` (scoring then echoes prompts alone). */
  #hasTokenize = true;
  #info: ServerInfo | undefined;
  #infoPending: Promise<ServerInfo> | undefined;
  #closed = false;

  constructor(options: OpenAICompatibleBackendOptions, client: HttpClient, pool: EndpointPool) {
    this.#options = options;
    this.#client = client;
    this.#pool = pool;
    this.id = `openai:${pool.endpoints.map((endpoint) => endpoint.baseUrl).join(",")}#${options.model}`;
  }

  capabilities(): Capabilities {
    const kind = this.#options.serverKind ?? this.#info?.kind;
    return {
      score: true,
      // Until the server is known, a grammar is assumed to be honoured; unknown servers may ignore it.
      grammar: kind === undefined ? true : grammarFields({ ...this.#info, kind }, "").honoured,
      chat: true,
      complete: true,
      ngramPenalty: false,
      maxContext: this.#options.contextSize ?? this.#options.maxContext ?? this.#info?.contextSize ?? 4096,
      parallel: this.#pool.capacity,
    };
  }

  retryCount(): number {
    return this.#client.retries;
  }

  requestCounts(): Array<{ baseUrl: string; sent: number }> {
    return this.#pool.endpoints.map((endpoint) => ({ baseUrl: endpoint.baseUrl, sent: endpoint.sent }));
  }

  async models(): Promise<ServedModel[]> {
    this.#checkOpen();
    return this.#client.request({ path: "/models", method: "GET", parse: parseModelsResponse });
  }

  serverInfo(): Promise<ServerInfo> {
    this.#checkOpen();
    if (this.#info) return Promise.resolve(this.#info);
    this.#infoPending ??= detectServerInfo(this.#client, this.#options.model, this.#options.serverKind).then(
      (info) => {
        this.#info = info;
        return info;
      },
      (error: unknown) => {
        this.#infoPending = undefined;
        throw error;
      },
    );
    return this.#infoPending;
  }

  /** The server's kind for choosing request fields; a server that cannot say counts as "other". */
  async #kindForRequests(): Promise<ServerInfo> {
    try {
      return await this.serverInfo();
    } catch (error) {
      if (error instanceof BackendError && error.retryable) throw error;
      return { kind: this.#options.serverKind ?? "other" };
    }
  }

  #warnOnce(key: string, text: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#options.onProgress?.({ type: "message", level: "warn", text });
  }

  /** An option this call could not apply: returned with the result, and reported once through onProgress. */
  #unapplied(warnings: string[], key: string, text: string): void {
    warnings.push(text);
    this.#warnOnce(key, text);
  }

  #checkOpen(): void {
    if (this.#closed) throw new BackendError(`${this.id} is closed; create a new backend to send more requests`);
  }

  /** Request body fields for the sampling options, in the OpenAI API's names plus documented extensions. */
  async #samplingBody(sampling: SamplingOptions, warnings: string[]): Promise<Record<string, unknown>> {
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
      const info = await this.#kindForRequests();
      const { body: fields, honoured } = grammarFields(info, sampling.grammar);
      Object.assign(body, fields);
      if (!honoured) {
        this.#unapplied(
          warnings,
          "grammar",
          info.kind === "openai"
            ? `${this.id}: the OpenAI API takes no grammar; the text was generated without it`
            : `${this.id}: the server's kind is unknown (set serverKind: vllm, sglang, llama-cpp or selfalign), so ` +
                "the grammar was sent as `grammar` and `guided_grammar` and may have been ignored; check the output",
        );
      }
    }
    if (sampling.ngramPenalties && sampling.ngramPenalties.length > 0) {
      this.#unapplied(
        warnings,
        "ngram",
        `${this.id}: n-gram penalties are not supported by OpenAI-compatible servers and were not applied; ` +
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
    const warnings: string[] = [];
    const { value: response, retries } = await this.#client.requestCounted({
      path: "/completions",
      body: { model: this.#options.model, prompt: request.prompt, n, ...(await this.#samplingBody(request, warnings)) },
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
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  }

  async score(prompt: string, continuations: string[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    this.#checkOpen();
    const url = this.#pool.endpoints[0]!.baseUrl;
    if (prompt.length === 0 && continuations.some((continuation) => continuation.length > 0))
      throw emptyPromptError(url);
    const top = options.topLogprobs ?? 0;
    // The prompt's own tokens are asked for once and shared by its continuations.
    let promptTokens: Promise<PromptTokens> | undefined;
    const promptTokensOnce = (signal: AbortSignal) => {
      promptTokens ??= this.#promptTokens(prompt, signal);
      return promptTokens;
    };
    const results: ScoreResult[] = new Array(continuations.length);
    for await (const result of runConcurrently(
      continuations.length,
      this.#pool.capacity,
      options.signal,
      async (index, signal) => ({
        index,
        score: await this.#scoreOne(prompt, continuations[index]!, signal, top, promptTokensOnce),
      }),
    ))
      results[result.index] = result.score;
    return results;
  }

  async #scoreOne(
    prompt: string,
    continuation: string,
    signal: AbortSignal,
    top: number,
    promptTokensOnce: (signal: AbortSignal) => Promise<PromptTokens>,
  ): Promise<ScoreResult> {
    if (continuation.length === 0) return { logprob: 0, tokens: [], isGreedy: true };
    const url = this.#pool.endpoints[0]!.baseUrl;
    const whole = prompt + continuation;
    const context = await promptTokensOnce(signal);
    const [echoed, wholeIds] = await Promise.all([
      this.#echo(whole, signal, top),
      context.kind === "ids" ? this.#scoringTokenize(whole, signal) : undefined,
    ]);
    const reference: PromptReference =
      context.kind === "ids"
        ? { kind: "tokenizer", context: context.ids, whole: wholeIds! }
        : { kind: "echo", prompt: context.echoed };
    return scoreFromEcho(echoed, continuationStart(echoed, reference, url), url, top);
  }

  /** The prompt's tokens: from the local tokenizer or the server's `/tokenize`, else from an echo of it. */
  async #promptTokens(prompt: string, signal: AbortSignal): Promise<PromptTokens> {
    const ids = await this.#scoringTokenize(prompt, signal);
    if (ids) return { kind: "ids", ids };
    return { kind: "echo", echoed: await this.#echo(prompt, signal, 0) };
  }

  /**
   * Token ids of `text` as the server's tokenizer makes them, with its own special-token default (no flag is
   * sent: vLLM and SGLang then add a BOS as their completions do; llama.cpp and `selfalign serve` add none, and
   * the echoed token count tells). Undefined when the server has no `/tokenize`.
   */
  async #scoringTokenize(text: string, signal: AbortSignal): Promise<number[] | undefined> {
    if (this.#options.tokenizer) return this.#options.tokenizer.tokenize(text);
    if (!this.#hasTokenize) return undefined;
    try {
      const ids = await this.#client.request({
        path: "/tokenize",
        root: true,
        body: { model: this.#options.model, prompt: text, content: text },
        // An answer that is not token ids means this server's /tokenize is something else: do without it.
        parse: (json) => {
          try {
            return parseTokenizeResponse(json);
          } catch {
            return undefined;
          }
        },
        signal,
      });
      if (ids === undefined) this.#hasTokenize = false;
      return ids;
    } catch (error) {
      if (error instanceof BackendError && !error.retryable && [404, 405, 501].includes(error.statusCode ?? 0)) {
        this.#hasTokenize = false;
        return undefined;
      }
      throw error;
    }
  }

  /** The server's echo of `text` with a log-probability per token (`echo` + `logprobs`, or `prompt_logprobs`). */
  async #echo(text: string, signal: AbortSignal, top: number): Promise<EchoedText> {
    const url = this.#pool.endpoints[0]!.baseUrl;
    const method = this.#options.scoreMethod ?? "echo";
    // vLLM's prompt_logprobs with k > 1 hides which entry is the prompt's own token when it is among the top k, so
    // the token comes from a k = 1 request and the alternatives from a second one.
    const send = (maxTokens: number, k = method === "echo" ? Math.max(1, top) : 1): Promise<CompletionsResponse> =>
      this.#client.request({
        path: "/completions",
        body: {
          model: this.#options.model,
          prompt: text,
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
      // Some servers (SGLang) reject max_tokens=0; ask for one token and ignore it.
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
    const echoed =
      method === "echo"
        ? echoedFromLogprobs(choice, response.usage, this.#scoreMaxTokens)
        : echoedFromPromptLogprobs(
            choice,
            top > 1 ? ((await send(1, top)).choices[0]?.promptLogprobs ?? undefined) : undefined,
          );
    if (!echoed) throw noLogprobsError(url);
    return echoed;
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
      // llama.cpp server reads `content`/`add_special`, vLLM and SGLang read `prompt`/`add_special_tokens`.
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
    const warnings: string[] = [];
    const { value: response, retries } = await this.#client.requestCounted({
      path: "/chat/completions",
      body: { model: this.#options.model, messages, ...(await this.#samplingBody(sampling, warnings)) },
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
      ...(warnings.length > 0 ? { warnings } : {}),
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
