/**
 * Client-side load balancing over several OpenAI-compatible replicas: each endpoint has a bounded number of
 * requests in flight (a semaphore); a request goes to the endpoint with the fewest in flight. An endpoint that just
 * failed rests for a while (a simple circuit breaker): while any other endpoint is healthy, requests wait for a
 * healthy one rather than retrying on the failing one; when all are resting, the least-failed one is used.
 */
import { AbortedError } from "../../errors/index.js";

export interface Endpoint {
  /** Base URL as configured, without a trailing slash, e.g. `http://host:8000/v1`. */
  readonly baseUrl: string;
  inFlight: number;
  /** Consecutive failed attempts; breaks ties so a retry prefers a replica that is answering. */
  failures: number;
  /** Requests sent to this endpoint (for tests and diagnostics). */
  sent: number;
  /** Until when (ms since epoch) the endpoint rests after a failure. */
  restingUntil: number;
}

interface Waiter {
  resolve: (endpoint: Endpoint) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class EndpointPool {
  readonly endpoints: Endpoint[];
  readonly #capacity: number;
  readonly #waiters: Waiter[] = [];

  constructor(baseUrls: string[], concurrencyPerEndpoint: number) {
    this.endpoints = baseUrls.map((url) => ({
      baseUrl: url.replace(/\/+$/, ""),
      inFlight: 0,
      failures: 0,
      sent: 0,
      restingUntil: 0,
    }));
    this.#capacity = concurrencyPerEndpoint;
  }

  /** Total requests the pool runs at once. */
  get capacity(): number {
    return this.#capacity * this.endpoints.length;
  }

  #pick(): Endpoint | undefined {
    const now = Date.now();
    const anyHealthy = this.endpoints.some((endpoint) => endpoint.restingUntil <= now);
    let best: Endpoint | undefined;
    for (const endpoint of this.endpoints) {
      if (endpoint.inFlight >= this.#capacity) continue;
      // With a healthy replica around (even a busy one), wait for it instead of using a resting one.
      if (anyHealthy && endpoint.restingUntil > now) continue;
      if (
        best === undefined ||
        endpoint.failures < best.failures ||
        (endpoint.failures === best.failures && endpoint.inFlight < best.inFlight)
      )
        best = endpoint;
    }
    return best;
  }

  /** Record a failed attempt: the endpoint rests for `restMs`. */
  markFailure(endpoint: Endpoint, restMs: number): void {
    endpoint.failures++;
    endpoint.restingUntil = Date.now() + restMs;
  }

  markSuccess(endpoint: Endpoint): void {
    endpoint.failures = 0;
    endpoint.restingUntil = 0;
  }

  /** Wait for a free slot on the least-loaded endpoint. Call `release` exactly once afterwards. */
  acquire(signal?: AbortSignal): Promise<Endpoint> {
    if (signal?.aborted) return Promise.reject(new AbortedError());
    const endpoint = this.#pick();
    if (endpoint) {
      endpoint.inFlight++;
      endpoint.sent++;
      return Promise.resolve(endpoint);
    }
    return new Promise<Endpoint>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          reject(new AbortedError());
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
    });
  }

  release(endpoint: Endpoint): void {
    endpoint.inFlight--;
    while (this.#waiters.length > 0) {
      const next = this.#pick();
      if (!next) return;
      const waiter = this.#waiters.shift()!;
      if (waiter.onAbort) waiter.signal?.removeEventListener("abort", waiter.onAbort);
      next.inFlight++;
      next.sent++;
      waiter.resolve(next);
    }
  }
}
