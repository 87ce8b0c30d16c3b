/**
 * JSON over HTTP with the retry policy of a well-behaved API client: exponential backoff with jitter that honours
 * `retry-after` on 408/409/429/5xx, network errors, timeouts and unreadable responses; no retry on other 4xx.
 */
import { AbortedError, BackendError } from "../../errors/index.js";
import type { Endpoint, EndpointPool } from "./endpoint-pool.js";

export interface RetryPolicy {
  /** Per-attempt timeout in milliseconds. */
  timeoutMs: number;
  /** Retries after the first attempt. */
  maxRetries: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

/** A failed attempt that will be retried after `delayMs`. */
export interface RetryEvent {
  url: string;
  /** 1 for the first retry. */
  attempt: number;
  /** Retries allowed in all (`maxRetries`). */
  maxRetries: number;
  delayMs: number;
  /** Why the attempt failed (never contains the API key). */
  reason: string;
  statusCode?: number;
}

export interface HttpRequestOptions<T> {
  /** Path after the base URL (`/completions`), or after the server root when `root` is true (`/tokenize`). */
  path: string;
  method?: "GET" | "POST";
  body?: unknown;
  /** Resolve `path` against the server root: the base URL without its trailing `/v1`. */
  root?: boolean;
  /** Checks the shape of the parsed JSON and returns it typed; throws a ResponseShapeError when it is wrong. */
  parse: (json: unknown) => T;
  signal?: AbortSignal;
}

/** The server answered 2xx with something that is not what the API promises. Retryable (a proxy hiccup), then fatal. */
export class ResponseShapeError extends Error {}

/** A non-2xx answer, carrying the server's message; a status we do not retry ends with a hint how to fix it. */
function statusError(status: number, url: string, detail: string, retryable: boolean): BackendError {
  const hint =
    status === 401 || status === 403
      ? " Check the API key (the environment variable named by `apiKeyEnv`)."
      : status === 404
        ? " Check the base URL (it usually ends in /v1) and the model name."
        : "";
  return new BackendError(`${url} answered HTTP ${status}: ${detail || "(no message)"}${retryable ? "" : `.${hint}`}`, {
    statusCode: status,
    retryable,
  });
}

/** The `error.message` of an OpenAI-shaped error body, or the start of the raw body. */
export function serverErrorMessage(text: string): string {
  try {
    const json = JSON.parse(text) as { error?: unknown; message?: unknown; detail?: unknown };
    if (json && typeof json === "object") {
      const error = json.error;
      if (typeof error === "string") return error;
      if (error && typeof error === "object" && typeof (error as { message?: unknown }).message === "string")
        return (error as { message: string }).message;
      if (typeof json.message === "string") return json.message;
      if (typeof json.detail === "string") return json.detail;
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 500).trim();
}

/** `retry-after` as milliseconds: either delta-seconds or an HTTP date. Undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

interface AttemptFailure {
  url: string;
  error: BackendError;
  /** Server-requested delay from `retry-after`. */
  retryAfterMs?: number;
}

export class HttpClient {
  readonly pool: EndpointPool;
  readonly #policy: RetryPolicy;
  readonly #headers: Record<string, string>;

  readonly #onRetry?: (event: RetryEvent) => void;
  #retries = 0;

  constructor(
    pool: EndpointPool,
    policy: RetryPolicy,
    apiKey: string | undefined,
    onRetry?: (event: RetryEvent) => void,
  ) {
    this.pool = pool;
    this.#policy = policy;
    this.#onRetry = onRetry;
    this.#headers = { "content-type": "application/json", accept: "application/json" };
    if (apiKey) this.#headers.authorization = `Bearer ${apiKey}`;
  }

  #url(endpoint: Endpoint, path: string, root: boolean | undefined): string {
    const base = root ? endpoint.baseUrl.replace(/\/v1$/, "") : endpoint.baseUrl;
    return `${base}${path}`;
  }

  /** Retries made so far, by every request of this client. */
  get retries(): number {
    return this.#retries;
  }

  /** Send one request, retrying per the policy on whichever endpoint is least loaded at each attempt. */
  async request<T>(options: HttpRequestOptions<T>): Promise<T> {
    return (await this.requestCounted(options)).value;
  }

  /** `request`, also saying how many times this request was retried before it succeeded. */
  async requestCounted<T>(options: HttpRequestOptions<T>): Promise<{ value: T; retries: number }> {
    const { maxRetries, initialBackoffMs, maxBackoffMs } = this.#policy;
    let last: AttemptFailure | undefined;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      if (attempt > 0) {
        const exponential = Math.min(maxBackoffMs, initialBackoffMs * 2 ** (attempt - 1));
        // "Equal jitter": half fixed, half random, so replicas that failed together do not retry together.
        const backoff = exponential / 2 + (Math.random() * exponential) / 2;
        const delay = Math.min(maxBackoffMs, Math.max(backoff, last?.retryAfterMs ?? 0));
        this.#retries++;
        this.#onRetry?.({
          url: last!.url,
          attempt,
          maxRetries,
          delayMs: delay,
          reason: last!.error.message,
          statusCode: last!.error.statusCode,
        });
        await sleep(delay, options.signal);
      }
      const endpoint = await this.pool.acquire(options.signal);
      try {
        const outcome = await this.#attempt(endpoint, options);
        if ("value" in outcome) {
          this.pool.markSuccess(endpoint);
          return { value: outcome.value, retries: attempt };
        }
        // Rest the endpoint at least a second (or as long as it asked), so other replicas take the retries.
        this.pool.markFailure(endpoint, Math.max(1000, outcome.retryAfterMs ?? 0));
        last = outcome;
      } finally {
        this.pool.release(endpoint);
      }
    }
    const error = last!.error;
    throw new BackendError(`${error.message} (gave up after ${maxRetries + 1} attempts)`, {
      statusCode: error.statusCode,
      retryable: true,
      cause: error,
    });
  }

  async #attempt<T>(endpoint: Endpoint, options: HttpRequestOptions<T>): Promise<{ value: T } | AttemptFailure> {
    const url = this.#url(endpoint, options.path, options.root);
    const timeout = AbortSignal.timeout(this.#policy.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let status: number;
    let text: string;
    let retryAfter: string | null;
    try {
      const response = await fetch(url, {
        method: options.method ?? "POST",
        headers: this.#headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal,
      });
      status = response.status;
      retryAfter = response.headers.get("retry-after");
      text = await response.text();
    } catch (error) {
      if (options.signal?.aborted) throw new AbortedError();
      const timedOut = timeout.aborted;
      const reason = timedOut
        ? `no answer within ${this.#policy.timeoutMs} ms (raise timeoutMs for slow servers)`
        : `network error: ${(error as Error)?.cause ?? (error as Error)?.message ?? String(error)}`;
      return { url, error: new BackendError(`${url}: ${reason}`, { retryable: true, cause: error }) };
    }
    if (status < 200 || status >= 300) {
      const detail = serverErrorMessage(text);
      const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
      if (!retryable) throw statusError(status, url, detail, false);
      return { url, error: statusError(status, url, detail, true), retryAfterMs: parseRetryAfter(retryAfter) };
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return {
        url,
        error: new BackendError(
          `${url} answered HTTP ${status} with a body that is not JSON (starts with ${JSON.stringify(text.slice(0, 80))}); expected an OpenAI-compatible JSON response`,
          { statusCode: status, retryable: true },
        ),
      };
    }
    try {
      return { value: options.parse(json) };
    } catch (error) {
      if (!(error instanceof ResponseShapeError)) throw error;
      return {
        url,
        error: new BackendError(`${url} answered with an unexpected JSON shape: ${error.message}`, {
          statusCode: status,
          retryable: true,
        }),
      };
    }
  }
}
