/**
 * The OpenAI-compatible backend against scripted local `node:http` servers (127.0.0.1, random ports): retries
 * and backoff, no retry on 4xx, timeouts, garbled answers, load balancing, bounded concurrency, scoring from
 * echoed log-probabilities, capability errors, and the API key never showing up in errors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { completeAll } from "../src/backends/language-model.js";
import {
  createOpenAICompatibleBackend,
  type OpenAICompatibleBackend,
  parseRetryAfter,
  type RetryEvent,
} from "../src/backends/openai-compatible/index.js";
import { createBackend } from "../src/backends/registry.js";
import { createProgressRenderer } from "../src/cli/progress-renderer.js";
import { AbortedError, BackendError, CapabilityError, ConfigError } from "../src/errors/index.js";
import type { ProgressEvent } from "../src/progress/progress-event.js";

interface Received {
  path: string;
  body: Record<string, unknown>;
  headers: IncomingMessage["headers"];
}

interface MockServer {
  url: string;
  received: Received[];
  maxInFlight: number;
  close(): Promise<void>;
}

type Handler = (request: Received, response: ServerResponse, count: number) => void | Promise<void>;

const servers: MockServer[] = [];

async function mockServer(handler: Handler): Promise<MockServer> {
  const received: Received[] = [];
  let inFlight = 0;
  const state = { maxInFlight: 0 };
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", async () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const entry: Received = {
        path: request.url ?? "",
        body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
        headers: request.headers,
      };
      received.push(entry);
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      response.on("close", () => inFlight--);
      await handler(entry, response, received.length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const mock: MockServer = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    received,
    get maxInFlight() {
      return state.maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  servers.push(mock);
  return mock;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function json(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

/** A completion whose text names its prompt, so a lost or mixed-up answer is visible. */
function completionFor(request: Received) {
  const n = (request.body.n as number | undefined) ?? 1;
  return {
    id: "cmpl-test",
    object: "text_completion",
    choices: Array.from({ length: n }, (_, index) => ({
      index,
      text: ` answer to ${request.body.prompt} #${index}`,
      finish_reason: index === 0 ? "stop" : "length",
      logprobs: null,
    })),
    usage: { prompt_tokens: 5, completion_tokens: 3 * n, total_tokens: 5 + 3 * n },
  };
}

const fast = { initialBackoffMs: 1, maxBackoffMs: 20 };

describe("retries", () => {
  it("survives 429 (retry-after), 500, a hung request, non-JSON and wrong-shape answers, then succeeds", async () => {
    const server = await mockServer((request, response, count) => {
      if (count === 1) return json(response, 429, { error: { message: "slow down" } }, { "retry-after": "0" });
      if (count === 2) return json(response, 500, { error: { message: "boom" } });
      if (count === 3) return; // hangs until the client times out
      if (count === 4) {
        response.writeHead(200, { "content-type": "application/json" });
        response.end("<html>proxy error</html>");
        return;
      }
      if (count === 5) return json(response, 200, { unexpected: true });
      return json(response, 200, completionFor(request));
    });
    const retries: RetryEvent[] = [];
    const backend = createOpenAICompatibleBackend({
      baseUrls: [server.url],
      model: "m",
      timeoutMs: 1500,
      maxRetries: 5,
      ...fast,
      onRetry: (event) => retries.push(event),
    });
    const [result] = await completeAll(backend, [{ prompt: "P0", maxTokens: 4 }]);
    expect(result!.completions[0]!.text).toBe(" answer to P0 #0");
    expect(server.received).toHaveLength(6);
    expect(retries.map((event) => event.statusCode)).toEqual([429, 500, undefined, 200, 200]);
    expect(retries[2]!.reason).toMatch(/no answer within 1500 ms/);
    expect(retries[3]!.reason).toMatch(/not JSON/);
    expect(retries[4]!.reason).toMatch(/unexpected JSON shape/);
    expect(backend.requestCounts()).toEqual([{ baseUrl: server.url, sent: 6 }]);
  });

  it("waits at least as long as retry-after asks (capped by maxBackoffMs)", async () => {
    const server = await mockServer((request, response, count) =>
      count === 1
        ? json(response, 503, { error: { message: "warming up" } }, { "retry-after": "0.05" })
        : json(response, 200, completionFor(request)),
    );
    const retries: RetryEvent[] = [];
    const backend = createOpenAICompatibleBackend({
      baseUrls: [server.url],
      model: "m",
      initialBackoffMs: 1,
      maxBackoffMs: 10_000,
      onRetry: (event) => retries.push(event),
    });
    await completeAll(backend, [{ prompt: "x" }]);
    expect(retries).toHaveLength(1);
    expect(retries[0]!.delayMs).toBeGreaterThanOrEqual(50);
    expect(retries[0]!.delayMs).toBeLessThan(1000);
  });

  it("parses retry-after as seconds or as an HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter("0.5", now)).toBe(500);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:10 GMT", now)).toBe(10_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it("does not retry a 400 and reports the server's message and status", async () => {
    const server = await mockServer((_request, response) =>
      json(response, 400, { error: { message: "max_tokens is too large: 99999", type: "invalid_request_error" } }),
    );
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    const error = await completeAll(backend, [{ prompt: "x", maxTokens: 99999 }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).statusCode).toBe(400);
    expect((error as BackendError).retryable).toBe(false);
    expect((error as Error).message).toContain("max_tokens is too large: 99999");
    expect(server.received).toHaveLength(1);
  });

  it("gives up after maxRetries with the last error", async () => {
    const server = await mockServer((_request, response) => json(response, 502, { error: "bad gateway" }));
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", maxRetries: 2, ...fast });
    const error = await completeAll(backend, [{ prompt: "x" }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(/HTTP 502: bad gateway.*gave up after 3 attempts/);
    expect(server.received).toHaveLength(3);
  });

  it("loses nothing when a third of the requests fail once", async () => {
    const failed = new Set<unknown>();
    const server = await mockServer((request, response) => {
      const prompt = request.body.prompt;
      if (Number(String(prompt).slice(1)) % 3 === 0 && !failed.has(prompt)) {
        failed.add(prompt);
        return json(response, 500, { error: { message: "flaky" } });
      }
      return json(response, 200, completionFor(request));
    });
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    const requests = Array.from({ length: 30 }, (_, i) => ({ prompt: `P${i}`, n: 2 }));
    const results = await completeAll(backend, requests);
    expect(results.map((result) => result.completions.map((c) => c.text))).toEqual(
      requests.map((request) => [` answer to ${request.prompt} #0`, ` answer to ${request.prompt} #1`]),
    );
    expect(results[0]!.completions.map((c) => c.finishReason)).toEqual(["stop", "length"]);
    // P0 failed once: its usage says so.
    expect(results[0]!.usage).toEqual({ promptTokens: 5, completionTokens: 6, retries: 1 });
    expect(results.reduce((sum, result) => sum + (result.usage.retries ?? 0), 0)).toBe(10);
    expect(server.received).toHaveLength(30 + 10);
  });

  it("stops at once when the caller aborts, without retrying", async () => {
    const server = await mockServer(() => undefined); // never answers
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", timeoutMs: 60_000, ...fast });
    const controller = new AbortController();
    const pending = completeAll(backend, [{ prompt: "x" }], { signal: controller.signal });
    while (server.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
    expect(server.received).toHaveLength(1);
  });
});

describe("load balancing and concurrency", () => {
  it("spreads requests over two replicas and never exceeds the per-endpoint limit", async () => {
    const slow: Handler = (request, response) => {
      setTimeout(() => json(response, 200, completionFor(request)), 20);
    };
    const a = await mockServer(slow);
    const b = await mockServer(slow);
    const backend = createOpenAICompatibleBackend({ baseUrls: [a.url, b.url], model: "m", concurrencyPerEndpoint: 2 });
    expect(backend.capabilities().parallel).toBe(4);
    const requests = Array.from({ length: 16 }, (_, i) => ({ prompt: `P${i}` }));
    const results = await completeAll(backend, requests);
    expect(results.map((result) => result.completions[0]!.text)).toEqual(
      requests.map((request) => ` answer to ${request.prompt} #0`),
    );
    expect(a.received.length + b.received.length).toBe(16);
    expect(a.received.length).toBeGreaterThanOrEqual(4);
    expect(b.received.length).toBeGreaterThanOrEqual(4);
    expect(a.maxInFlight).toBeLessThanOrEqual(2);
    expect(b.maxInFlight).toBeLessThanOrEqual(2);
  });

  it("retries a refused connection on the other replica", async () => {
    const gone = await mockServer(() => undefined);
    const goneUrl = gone.url;
    await gone.close();
    const up = await mockServer((request, response) => json(response, 200, completionFor(request)));
    const retries: RetryEvent[] = [];
    const backend = createOpenAICompatibleBackend({
      baseUrls: [goneUrl, up.url],
      model: "m",
      concurrencyPerEndpoint: 1,
      onRetry: (event) => retries.push(event),
      ...fast,
    });
    const [result] = await completeAll(backend, [{ prompt: "P1" }]);
    expect(result!.completions[0]!.text).toBe(" answer to P1 #0");
    expect(retries).toHaveLength(1);
    expect(retries[0]!.url).toBe(`${goneUrl}/completions`);
    expect(retries[0]!.reason).toMatch(/network error/);
    expect(backend.requestCounts().map((count) => count.sent)).toEqual([1, 1]);
  });

  it("moves retries to the replica that answers", async () => {
    const down = await mockServer((_request, response) => json(response, 503, { error: { message: "down" } }));
    const up = await mockServer((request, response) => json(response, 200, completionFor(request)));
    const backend = createOpenAICompatibleBackend({
      baseUrls: [down.url, up.url],
      model: "m",
      concurrencyPerEndpoint: 1,
      maxRetries: 3,
      ...fast,
    });
    const results = await completeAll(
      backend,
      Array.from({ length: 6 }, (_, i) => ({ prompt: `P${i}` })),
    );
    expect(results.map((result) => result.completions[0]!.text)).toEqual(
      Array.from({ length: 6 }, (_, i) => ` answer to P${i} #0`),
    );
    // The failing replica is tried once, then rests while the healthy one takes every request.
    expect(down.received).toHaveLength(1);
    expect(up.received).toHaveLength(6);
  });
});

describe("request bodies and answers", () => {
  it("sends sampling options in OpenAI's names and the API key as a bearer token, never in errors", async () => {
    process.env.SELFALIGN_TEST_HTTP_KEY = "sk-test-secret-value";
    const server = await mockServer((request, response) =>
      request.headers.authorization === "Bearer sk-test-secret-value" && request.body.prompt === "ok"
        ? json(response, 200, completionFor(request))
        : json(response, 401, { error: { message: "Incorrect API key provided" } }),
    );
    const warnings: string[] = [];
    const backend = createOpenAICompatibleBackend({
      baseUrls: [server.url],
      model: "my-model",
      apiKeyEnv: "SELFALIGN_TEST_HTTP_KEY",
      onProgress: (event) => {
        if (event.type === "message") warnings.push(event.text);
      },
      ...fast,
    });
    const request = {
      prompt: "ok",
      temperature: 0.7,
      topP: 0.9,
      maxTokens: 12,
      stop: ["\n\n"],
      seed: 42,
      logitBias: { 2: -100 },
      frequencyPenalty: 0.5,
      presencePenalty: 0.25,
      allowEos: false,
      grammar: 'root ::= "a"',
      ngramPenalties: [{ n: 1, penalty: 0.1 }],
    };
    const results = await completeAll(backend, [request, request]);
    // The server's kind is asked first (GET /v1/models); this one does not say, so the grammar goes in both
    // fields that servers of unknown kind may read, and each result says it may have been ignored.
    const completions = server.received.filter((received) => received.path === "/v1/completions");
    expect(completions[0]!.body).toEqual({
      model: "my-model",
      prompt: "ok",
      n: 1,
      temperature: 0.7,
      top_p: 0.9,
      max_tokens: 12,
      stop: ["\n\n"],
      seed: 42,
      logit_bias: { 2: -100 },
      frequency_penalty: 0.5,
      presence_penalty: 0.25,
      ignore_eos: true,
      grammar: 'root ::= "a"',
      guided_grammar: 'root ::= "a"',
    });
    expect(warnings).toHaveLength(2); // grammar and n-gram penalties, each once
    for (const result of results) {
      expect(result.warnings).toHaveLength(2);
      expect(result.warnings![0]).toMatch(/kind is unknown.*grammar.*may have been ignored/);
      expect(result.warnings![1]).toMatch(/n-gram penalties .* were not applied/);
    }
    const error = await completeAll(backend, [{ prompt: "rejected" }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).statusCode).toBe(401);
    expect((error as Error).message).toContain("Incorrect API key provided");
    expect((error as Error).message).not.toContain("sk-test-secret-value");
    delete process.env.SELFALIGN_TEST_HTTP_KEY;
  });

  it("fails with a ConfigError naming the variable when the API key variable is unset", () => {
    delete process.env.SELFALIGN_TEST_MISSING_KEY;
    expect(() =>
      createOpenAICompatibleBackend({
        baseUrls: ["http://127.0.0.1:1/v1"],
        model: "m",
        apiKeyEnv: "SELFALIGN_TEST_MISSING_KEY",
      }),
    ).toThrow(/SELFALIGN_TEST_MISSING_KEY is not set/);
    expect(() => createOpenAICompatibleBackend({ baseUrls: ["ftp://x/v1"], model: "m" })).toThrow(ConfigError);
  });

  it("chats through /v1/chat/completions and tokenizes through /tokenize and /detokenize", async () => {
    const server = await mockServer((request, response) => {
      if (request.path === "/v1/chat/completions")
        return json(response, 200, {
          choices: [{ index: 0, message: { role: "assistant", content: "Hi there" }, finish_reason: "length" }],
          usage: { prompt_tokens: 7, completion_tokens: 2 },
        });
      if (request.path === "/tokenize") return json(response, 200, { tokens: [5, 6, 7] });
      if (request.path === "/detokenize") return json(response, 200, { prompt: "abc" }); // vLLM's field name
      return json(response, 404, { error: { message: `no route ${request.path}` } });
    });
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "judge", ...fast });
    const chat = await backend.chat([{ role: "user", content: "Hello" }], { temperature: 0, maxTokens: 2 });
    expect(chat).toEqual({
      message: { role: "assistant", content: "Hi there" },
      finishReason: "length",
      usage: { promptTokens: 7, completionTokens: 2 },
    });
    expect(server.received[0]!.body.messages).toEqual([{ role: "user", content: "Hello" }]);
    expect(await backend.tokenize("abc")).toEqual([5, 6, 7]);
    expect(await backend.countTokens("abc")).toBe(3);
    expect(await backend.detokenize([5, 6, 7])).toBe("abc");
    expect(server.received[1]!.body).toMatchObject({ content: "abc", prompt: "abc", add_special: false });
  });
});

describe("score", () => {
  /**
   * A server whose tokenizer splits "Hello world!" as Hel|lo| wo|rld|! and "Hello wor" as Hel|lo| wor: the prompt's
   * last token merges with the continuation across the boundary. Echoes carry no BOS here, and `text_offset`s that
   * describe the text.
   */
  const vocabulary: Record<string, number[]> = {
    "Hello wor": [1, 2, 5],
    "Hello world!": [1, 2, 3, 4, 6],
    Hello: [1, 2],
  };
  const tokenizeAnswer = (request: Received) => ({ tokens: vocabulary[String(request.body.prompt)] ?? [] });
  const echoAnswer = (withLogprobs: boolean, extraToken: boolean) => ({
    choices: [
      {
        index: 0,
        text: `Hello world!${extraToken ? " X" : ""}`,
        finish_reason: "length",
        logprobs: withLogprobs
          ? {
              tokens: ["Hel", "lo", " wo", "rld", "!", ...(extraToken ? [" X"] : [])],
              token_logprobs: [null, -1.5, -2, -0.25, -0.5, ...(extraToken ? [-9] : [])],
              top_logprobs: [
                null,
                { lo: -1.5 },
                { " wa": -1 },
                { rld: -0.25 },
                { "!": -0.5 },
                ...(extraToken ? [{ " X": -9 }] : []),
              ],
              text_offset: [0, 3, 5, 8, 11, ...(extraToken ? [12] : [])],
            }
          : null,
      },
    ],
    usage: { prompt_tokens: 5, completion_tokens: extraToken ? 1 : 0, total_tokens: extraToken ? 6 : 5 },
  });
  const completionsOf = (server: MockServer) => server.received.filter((r) => r.path === "/v1/completions");

  it("aligns by token count: the continuation is the whole text's tokens after the common prefix", async () => {
    const server = await mockServer((request, response) =>
      request.path === "/tokenize"
        ? json(response, 200, tokenizeAnswer(request))
        : json(response, 200, echoAnswer(true, false)),
    );
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    // " wor" (prompt) and " wo" + "rld" (whole) differ: " wo" is read by the model after "Hel|lo", so it is scored.
    const [result] = await backend.score("Hello wor", ["ld!"]);
    expect(result!.tokens.map((token) => [token.text, token.logprob])).toEqual([
      [" wo", -2],
      ["rld", -0.25],
      ["!", -0.5],
    ]);
    expect(result!.logprob).toBeCloseTo(-2.75, 12);
    expect(result!.isGreedy).toBe(false);
    expect(completionsOf(server)[0]!.body).toMatchObject({
      prompt: "Hello world!",
      echo: true,
      logprobs: 1,
      max_tokens: 0,
    });
    // /tokenize without a special-token flag: the server's own default, as its completions endpoint uses it.
    const tokenizeBodies = server.received.filter((r) => r.path === "/tokenize").map((r) => r.body);
    expect(tokenizeBodies).toContainEqual({ model: "m", prompt: "Hello wor", content: "Hello wor" });
    const [prefix] = await backend.score("Hello", [" world!"]);
    expect(prefix!.tokens.map((token) => token.text)).toEqual([" wo", "rld", "!"]);
    // An empty continuation costs nothing and scores 0, as on the embedded backend.
    const sent = server.received.length;
    expect(await backend.score("Hello", [""])).toEqual([{ logprob: 0, tokens: [], isGreedy: true }]);
    expect(server.received.length).toBe(sent);
  });

  it("asks for one token when the server rejects max_tokens 0, and ignores the generated token", async () => {
    const server = await mockServer((request, response) => {
      if (request.path === "/tokenize") return json(response, 200, tokenizeAnswer(request));
      return request.body.max_tokens === 0
        ? json(response, 400, { error: { message: "max_tokens must be at least 1" } })
        : json(response, 200, echoAnswer(true, true));
    });
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    const [first] = await backend.score("Hello", [" world!"]);
    const [second] = await backend.score("Hello", [" world!"]);
    expect(first!.logprob).toBeCloseTo(-2.75, 12);
    expect(second!.logprob).toBeCloseTo(-2.75, 12);
    expect(completionsOf(server).map((request) => request.body.max_tokens)).toEqual([0, 1, 1]);
  });

  it("treats negative and made-up text_offsets as missing, and counts a BOS the server echoes", async () => {
    // SGLang's shape: every offset -1, a BOS first; its usage counts the BOS, /tokenize (no flag) does not.
    const server = await mockServer((request, response) => {
      if (request.path === "/tokenize") return json(response, 200, tokenizeAnswer(request));
      json(response, 200, {
        choices: [
          {
            index: 0,
            text: "Hello world!",
            finish_reason: "length",
            logprobs: {
              tokens: ["<s>", "Hel", "lo", "wo", "rld", "!"],
              token_logprobs: [null, -7, -1.5, -2, -0.25, -0.5],
              top_logprobs: [null, { Hel: -7 }, { lo: -1.5 }, { wa: -1 }, { rld: -0.25 }, { "!": -0.5 }],
              text_offset: [-1, -1, -1, -1, -1, -1],
            },
          },
        ],
        usage: { prompt_tokens: 6, completion_tokens: 0 },
      });
    });
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    const [result] = await backend.score("Hello", [" world!"]);
    expect(result!.tokens.map((token) => token.logprob)).toEqual([-2, -0.25, -0.5]);
    // The offsets say nothing, so each token's text is the server's string for it.
    expect(result!.tokens.map((token) => token.text)).toEqual(["wo", "rld", "!"]);
  });

  it("scores from vLLM prompt_logprobs when asked to", async () => {
    const server = await mockServer((request, response) => {
      if (request.path === "/tokenize")
        return json(response, 200, { tokens: request.body.prompt === "ab" ? [11] : [11, 12] });
      json(response, 200, {
        choices: [
          {
            index: 0,
            text: "!",
            logprobs: null,
            // vLLM echoes the BOS its tokenizer adds: the first entry (null) is the BOS, then "ab", then " c".
            prompt_logprobs: [
              null,
              { "11": { logprob: -1, rank: 1, decoded_token: "ab" } },
              {
                "12": { logprob: -3, rank: 4, decoded_token: " c" },
                "99": { logprob: -0.1, rank: 1, decoded_token: "!" },
              },
            ],
          },
        ],
      });
    });
    const backend = createOpenAICompatibleBackend({
      baseUrls: [server.url],
      model: "m",
      scoreMethod: "prompt-logprobs",
      ...fast,
    });
    const [result] = await backend.score("ab", [" c"]);
    expect(result).toEqual({ logprob: -3, tokens: [{ token: 12, text: " c", logprob: -3 }], isGreedy: false });
    expect(completionsOf(server)[0]!.body).toEqual({
      model: "m",
      prompt: "ab c",
      prompt_logprobs: 1,
      max_tokens: 1,
      temperature: 0,
    });
    // With topLogprobs 1: one request; the alternatives are the top 1 (the actual token, rank 4, is not among them).
    const [withTop] = await backend.score("ab", [" c"], { topLogprobs: 1 });
    expect(withTop!.tokens[0]!.top).toEqual([{ token: 99, text: "!", logprob: -0.1 }]);
    expect(completionsOf(server)).toHaveLength(2);
    expect(completionsOf(server)[1]!.body.prompt_logprobs).toBe(1);
  });

  it("with prompt_logprobs and k > 1, takes the token from a k = 1 answer and the alternatives from a k answer", async () => {
    // The actual token (12, " c") is the most likely here. With k = 3 vLLM returns the top 3 with no mark of which
    // is the prompt's own token (and JSON.parse reorders number-like keys), so only the k = 1 answer tells.
    const server = await mockServer((request, response) => {
      if (request.path === "/tokenize")
        return json(response, 200, { tokens: request.body.prompt === "ab" ? [11] : [11, 12] });
      const k = (request.body as { prompt_logprobs: number }).prompt_logprobs;
      const entry =
        k === 1
          ? { "12": { logprob: -0.2, rank: 1, decoded_token: " c" } }
          : {
              "7": { logprob: -2.5, rank: 2, decoded_token: " d" },
              "12": { logprob: -0.2, rank: 1, decoded_token: " c" },
              "30": { logprob: -3, rank: 3, decoded_token: "!" },
            };
      json(response, 200, {
        choices: [
          {
            index: 0,
            text: "!",
            logprobs: null,
            prompt_logprobs: [null, { "11": { logprob: -1, rank: 1, decoded_token: "ab" } }, entry],
          },
        ],
      });
    });
    const backend = createOpenAICompatibleBackend({
      baseUrls: [server.url],
      model: "m",
      scoreMethod: "prompt-logprobs",
      ...fast,
    });
    const [result] = await backend.score("ab", [" c"], { topLogprobs: 3 });
    expect(result).toMatchObject({ logprob: -0.2, isGreedy: true });
    expect(result!.tokens[0]).toMatchObject({ token: 12, text: " c", logprob: -0.2 });
    expect(result!.tokens[0]!.top?.map((t) => t.token)).toEqual([12, 7, 30]);
    expect(completionsOf(server).map((r) => (r.body as { prompt_logprobs: number }).prompt_logprobs)).toEqual([1, 3]);
  });

  it("says when /tokenize and the completions endpoint disagree about the tokens", async () => {
    const server = await mockServer((request, response) =>
      request.path === "/tokenize"
        ? json(response, 200, { tokens: request.body.prompt === "Hello" ? [1, 2] : [1, 2, 3, 4, 7] })
        : json(response, 200, {
            ...echoAnswer(true, false),
            choices: [
              {
                ...echoAnswer(true, false).choices[0]!,
                logprobs: {
                  ...echoAnswer(true, false).choices[0]!.logprobs!,
                  tokens: ["token_id:1", "token_id:2", "token_id:3", "token_id:4", "token_id:6"],
                },
              },
            ],
          }),
    );
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    await expect(backend.score("Hello", [" world!"])).rejects.toThrow(
      /tokenised the scored text differently in \/v1\/completions \(5 tokens\) and in \/tokenize \(5 tokens, different at token 4\)/,
    );
  });

  it("throws a CapabilityError when the server's echo has no logprobs", async () => {
    const server = await mockServer((request, response) =>
      request.path === "/tokenize"
        ? json(response, 200, tokenizeAnswer(request))
        : json(response, 200, echoAnswer(false, false)),
    );
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    const error = await backend.score("Hello wor", ["ld!"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CapabilityError);
    expect((error as Error).message).toMatch(/cannot score text.*embedded backend.*vLLM/s);
    expect(completionsOf(server)).toHaveLength(1);
  });

  it("refuses an empty prompt, whose first token has no log-probability over HTTP", async () => {
    const server = await mockServer((_request, response) => json(response, 200, echoAnswer(true, false)));
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    await expect(backend.score("", ["Hello world!"])).rejects.toThrow(/empty prompt cannot be scored exactly/);
    expect(server.received).toHaveLength(0);
  });

  it("throws a CapabilityError on a chat-only server", async () => {
    const server = await mockServer((_request, response) =>
      json(response, 404, { error: { message: "Unknown request URL: POST /v1/completions" } }),
    );
    const backend = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "m", ...fast });
    const error = await backend.score("a", ["b"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CapabilityError);
    expect((error as Error).message).toMatch(/no \/completions endpoint.*chat-only/);
  });
});

describe("retries are visible", () => {
  it("each retry is a progress event with its reason, counted on the answer and on the backend", async () => {
    // Every second attempt of each request fails with a 503: one retry per request.
    const server = await mockServer((request, response, count) => {
      if (count % 2 === 1) return json(response, 503, { error: { message: `warming up (${count})` } });
      if (request.path.endsWith("/chat/completions"))
        return json(response, 200, {
          id: "chat",
          object: "chat.completion",
          choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
          usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
        });
      return json(response, 200, completionFor(request));
    });
    const events: ProgressEvent[] = [];
    // Through the registry, as the CLI and the pipeline create it: progress alone is enough to see retries.
    const backend = (await createBackend(
      // Context and server kind given, so the backend asks the server nothing before the requests counted here.
      {
        type: "openai",
        baseUrls: [server.url],
        model: "m",
        maxRetries: 3,
        contextSize: 4096,
        serverKind: "other",
        ...fast,
      },
      { onProgress: (event) => events.push(event) },
    )) as OpenAICompatibleBackend;
    const [first] = await completeAll(backend, [{ prompt: "P0", maxTokens: 4 }]);
    expect(first!.usage.retries).toBe(1);
    const chat = await backend.chat([{ role: "user", content: "hello" }]);
    expect(chat.usage.retries).toBe(1);
    const retries = events.filter((event) => event.type === "request-retry");
    expect(retries).toHaveLength(2);
    expect(retries[0]).toMatchObject({ attempt: 1, maxRetries: 3, statusCode: 503 });
    expect(retries[0]!.reason).toContain("answered HTTP 503: warming up (1)");
    expect(retries[1]!.reason).toContain("warming up (3)");
    expect(retries[1]!.url).toBe(`${server.url}/chat/completions`);
    expect(backend.retryCount()).toBe(2);

    // An answer that needed no retry says so by leaving the count out.
    const calm = await mockServer((request, response) => json(response, 200, completionFor(request)));
    const steady = createOpenAICompatibleBackend({ baseUrls: [calm.url], model: "m", ...fast });
    const [result] = await completeAll(steady, [{ prompt: "P1" }]);
    expect(result!.usage.retries).toBeUndefined();
    expect(steady.retryCount()).toBe(0);
  });

  it("the CLI prints one line per retry with the reason", () => {
    let text = "";
    const renderer = createProgressRenderer({
      stream: {
        write: (chunk: string) => {
          text += chunk;
        },
      },
      mode: "plain",
      color: false,
      logLevel: "warn",
    });
    renderer.onProgress({
      type: "request-retry",
      url: "http://127.0.0.1:8000/v1/completions",
      attempt: 2,
      maxRetries: 5,
      delayMs: 1500,
      reason: "http://127.0.0.1:8000/v1/completions answered HTTP 500: boom",
      statusCode: 500,
    });
    expect(text).toBe("warning: retry 2/5 in 1.5s: http://127.0.0.1:8000/v1/completions answered HTTP 500: boom\n");
  });
});
