/**
 * `selfalign serve` over the embedded engine on a tiny GGUF written here: the official `openai` npm client works
 * against it; the HTTP backend talking to it scores and generates exactly as the embedded backend does; errors
 * come back in OpenAI's shape; the CLI prints its URL and stops cleanly on Ctrl+C.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completeAll, type LanguageModel } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { createOpenAICompatibleBackend } from "../src/backends/openai-compatible/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { type StartServerResult, startServer } from "../src/serve/server.js";

const API_KEY = "serve-test-key";
let dir: string;
let modelPath: string;
let embedded: LanguageModel;
let server: StartServerResult;
let client: OpenAI;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-serve-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, { seed: 3, contextLength: 512 });
  embedded = await createLlamaCppBackend({ model: modelPath, contextSize: 512, sequences: 2, threads: 1, seed: 1 });
  server = await startServer({ model: embedded, port: 0, modelName: "tiny", apiKey: API_KEY });
  client = new OpenAI({ baseURL: server.url, apiKey: API_KEY, maxRetries: 0, timeout: 60_000 });
});

afterAll(async () => {
  await server?.close();
  await embedded?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface ErrorBody {
  status?: string;
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function raw(path: string, init: RequestInit & { auth?: boolean } = {}) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (init.auth !== false) headers.authorization = `Bearer ${API_KEY}`;
  const response = await fetch(`${server.url.replace(/\/v1$/, "")}${path}`, { ...init, headers });
  return { status: response.status, headers: response.headers, body: (await response.json()) as ErrorBody };
}

/** The embedded engine with `complete` held at a gate: tells when a request reached the model, and its signal. */
function gatedModel() {
  let enter!: (signal: AbortSignal | undefined) => void;
  let open!: () => void;
  const entered = new Promise<AbortSignal | undefined>((resolve) => {
    enter = resolve;
  });
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const model: LanguageModel = {
    id: embedded.id,
    capabilities: () => embedded.capabilities(),
    async *complete(requests, options) {
      enter(options?.signal);
      await gate;
      yield* embedded.complete(requests, options);
    },
    score: (prompt, continuations, options) => embedded.score(prompt, continuations, options),
    tokenize: (text, options) => embedded.tokenize(text, options),
    detokenize: (tokens) => embedded.detokenize(tokens),
    countTokens: (text) => embedded.countTokens(text),
    chat: (messages, options) => embedded.chat(messages, options),
    close: async () => {},
  };
  return { model, entered, open };
}

function expectOpenAIError(body: ErrorBody, code: string | null) {
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(typeof body.error.message).toBe("string");
  expect(body.error.message.length).toBeGreaterThan(10);
  expect(body.error.code).toBe(code);
}

describe("the official openai client against selfalign serve", () => {
  it("lists the model", async () => {
    const models = await client.models.list();
    expect(models.data.map((model) => model.id)).toEqual(["tiny"]);
  });

  it("creates greedy completions equal to the embedded backend's, for several prompts and n", async () => {
    const prompts = ["Once upon a time", "The capital of"];
    const expected = await completeAll(
      embedded,
      prompts.map((prompt) => ({ prompt, temperature: 0, maxTokens: 8 })),
    );
    const completion = await client.completions.create({
      model: "tiny",
      prompt: prompts,
      max_tokens: 8,
      temperature: 0,
      n: 2,
    });
    expect(completion.object).toBe("text_completion");
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1, 2, 3]);
    expect(completion.choices.map((choice) => choice.text)).toEqual([
      expected[0]!.completions[0]!.text,
      expected[0]!.completions[0]!.text,
      expected[1]!.completions[0]!.text,
      expected[1]!.completions[0]!.text,
    ]);
    expect(completion.usage!.completion_tokens).toBeGreaterThan(0);
    expect(completion.usage!.total_tokens).toBe(completion.usage!.prompt_tokens + completion.usage!.completion_tokens);
  });

  it("accepts prompts as token ids", async () => {
    const ids = await embedded.tokenize("token ids");
    const completion = await client.completions.create({ model: "tiny", prompt: ids, max_tokens: 0, echo: true });
    expect(completion.choices[0]!.text).toBe(await embedded.detokenize(ids));
    expect(completion.choices[0]!.finish_reason).toBe("length");
  });

  it("cuts at stop strings", async () => {
    const request = { model: "tiny", prompt: "a b c", max_tokens: 40, temperature: 1, seed: 5 };
    // The same seeded sample without stop strings. The random-weight model may never write " " or "e", so two
    // characters that this sample does write are stop strings too: the cut is certain to happen.
    const uncut = (await client.completions.create(request)).choices[0]!.text;
    const seen = [...new Set(uncut.slice(8).match(/[A-Za-z0-9]/g) ?? [])].slice(0, 2);
    expect(seen).toHaveLength(2);
    const stop = [" ", "e", ...seen];
    const at = Math.min(...stop.map((s) => uncut.indexOf(s)).filter((i) => i >= 0));
    const completion = await client.completions.create({ ...request, stop });
    expect(completion.choices[0]!.text).not.toMatch(/[ e]/);
    expect(completion.choices[0]!.text).toBe(uncut.slice(0, at));
    expect(completion.choices[0]!.finish_reason).toBe("stop");
  });

  it("streams a completion as it is generated, in chunks that add up to the same text", async () => {
    const request = { model: "tiny", prompt: "Hello", max_tokens: 24, temperature: 1, seed: 9 };
    const plain = await client.completions.create(request);
    const stream = await client.completions.create({ ...request, stream: true });
    const texts: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice?.text) texts.push(choice.text);
      finish = choice?.finish_reason ?? finish;
    }
    expect(texts.join("")).toBe(plain.choices[0]!.text);
    expect(finish).toBe(plain.choices[0]!.finish_reason);
    // Token by token, not one chunk at the end (a token may hold back half a UTF-8 character).
    expect(plain.usage!.completion_tokens).toBeGreaterThan(4);
    expect(texts.length).toBeGreaterThan(plain.usage!.completion_tokens / 3);
  });

  it("streams with stop strings, echo and n: per choice, the chunks add up to the unstreamed text", async () => {
    const request = { model: "tiny", prompt: ["one", "two"], max_tokens: 30, temperature: 1, seed: 4, n: 2 };
    const uncut = await client.completions.create(request);
    // Stop at a two-character string that one sample writes, so some choice is cut and some text is held back.
    const sample = uncut.choices[0]!.text;
    const stop = [sample.slice(10, 12)];
    const plain = await client.completions.create({ ...request, stop, echo: true });
    const stream = await client.completions.create({ ...request, stop, echo: true, stream: true });
    const texts = new Map<number, string>();
    const chunks = new Map<number, number>();
    for await (const chunk of stream)
      for (const choice of chunk.choices) {
        texts.set(choice.index, (texts.get(choice.index) ?? "") + choice.text);
        chunks.set(choice.index, (chunks.get(choice.index) ?? 0) + 1);
      }
    expect(plain.choices.map((choice) => choice.text)).toHaveLength(4);
    for (const choice of plain.choices) expect(texts.get(choice.index)).toBe(choice.text);
    expect(plain.choices[0]!.text).toBe(`one${sample.slice(0, sample.indexOf(stop[0]!))}`);
    expect(Math.max(...chunks.values())).toBeGreaterThan(3);
  });
  it("echoes the prompt with log-probabilities (max_tokens 0), the first one null", async () => {
    const prompt = "The quick brown fox";
    const completion = await client.completions.create({
      model: "tiny",
      prompt,
      max_tokens: 0,
      echo: true,
      logprobs: 1,
    });
    const choice = completion.choices[0]!;
    expect(choice.text).toBe(prompt);
    const logprobs = choice.logprobs!;
    const [reference] = await embedded.score("", [prompt]);
    expect(logprobs.tokens!.length).toBe(reference!.tokens.length);
    expect(logprobs.token_logprobs![0]).toBeNull();
    logprobs.token_logprobs!.slice(1).forEach((logprob, i) => {
      expect(logprob).toBeCloseTo(reference!.tokens[i + 1]!.logprob, 5);
    });
    expect(logprobs.text_offset![0]).toBe(0);
    for (let i = 1; i < logprobs.text_offset!.length; i++)
      expect(logprobs.text_offset![i]!).toBeGreaterThanOrEqual(logprobs.text_offset![i - 1]!);
  });

  it("gives log-probabilities of generated tokens after the echoed prompt", async () => {
    const completion = await client.completions.create({
      model: "tiny",
      prompt: "abc",
      max_tokens: 5,
      temperature: 0,
      echo: true,
      logprobs: 1,
    });
    const choice = completion.choices[0]!;
    // The tokens generated, scored as such (the text may not tokenise back into them: see serve-limits.test.ts).
    const [direct] = await completeAll(embedded, [{ prompt: "abc", maxTokens: 5, temperature: 0 }]);
    expect(choice.text.slice(3)).toBe(direct!.completions[0]!.text);
    const [reference] = await embedded.scoreTokens!(await embedded.tokenize("abc", { addBos: true }), [
      direct!.completions[0]!.tokens!,
    ]);
    const promptTokens = (await embedded.score("", ["abc"]))[0]!.tokens.length;
    const tail = choice.logprobs!.token_logprobs!.slice(promptTokens);
    expect(tail).toHaveLength(reference!.tokens.length);
    tail.forEach((logprob, i) => {
      expect(logprob).toBeCloseTo(reference!.tokens[i]!.logprob, 5);
    });
    expect(choice.logprobs!.text_offset![promptTokens]).toBe(3);
  });

  it("fills top_logprobs with the k most likely tokens and the chosen one, as lm-evaluation-harness reads them", async () => {
    const prompt = "Score me:";
    const text = " not the greedy text";
    const completion = await client.completions.create({
      model: "tiny",
      prompt: prompt + text,
      max_tokens: 0,
      echo: true,
      logprobs: 3,
      // Keys as token ids: two byte tokens can both print as U+FFFD and would share a text key.
      return_tokens_as_token_ids: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const logprobs = completion.choices[0]!.logprobs!;
    const [reference] = await embedded.score(prompt, [text], { topLogprobs: 3 });
    const promptTokens = (await embedded.score("", [prompt]))[0]!.tokens.length;
    expect(logprobs.top_logprobs![0]).toBeNull();
    const tops = logprobs.top_logprobs!.slice(promptTokens);
    const chosen = logprobs.token_logprobs!.slice(promptTokens);
    expect(tops).toHaveLength(reference!.tokens.length);
    tops.forEach((top, i) => {
      const token = reference!.tokens[i]!;
      expect(top).not.toBeNull();
      expect(Object.keys(top!).length).toBeLessThanOrEqual(4);
      expect(top![`token_id:${token.token}`]).toBeCloseTo(token.logprob, 5);
      for (const alternative of token.top!)
        expect(top![`token_id:${alternative.token}`]).toBeCloseTo(alternative.logprob, 5);
      // lm-evaluation-harness: a token is greedy when its log-probability is the largest in top_logprobs.
      const harnessGreedy = chosen[i] === Math.max(...Object.values(top!));
      expect(harnessGreedy).toBe(token.top![0]!.token === token.token);
    });
    expect(reference!.isGreedy).toBe(false);
  });

  it("chats, plain and streamed", async () => {
    const chat = await client.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 5,
      temperature: 0,
    });
    expect(chat.object).toBe("chat.completion");
    expect(chat.choices[0]!.message.role).toBe("assistant");
    expect(typeof chat.choices[0]!.message.content).toBe("string");
    const stream = await client.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 5,
      temperature: 0,
      stream: true,
    });
    let content = "";
    for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? "";
    expect(content).toBe(chat.choices[0]!.message.content);
  });

  it("streams a chat reply as it is written, trimmed like the whole reply", async () => {
    const request = {
      model: "tiny",
      messages: [{ role: "user" as const, content: "Tell me more" }],
      max_tokens: 24,
      temperature: 1,
      seed: 2,
    };
    const chat = await client.chat.completions.create(request);
    const stream = await client.chat.completions.create({ ...request, stream: true });
    const deltas: string[] = [];
    let role: string | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      role ??= choice?.delta.role;
      if (choice?.delta.content) deltas.push(choice.delta.content);
      finish = choice?.finish_reason ?? finish;
    }
    expect(role).toBe("assistant");
    expect(deltas.join("")).toBe(chat.choices[0]!.message.content);
    expect(finish).toBe(chat.choices[0]!.finish_reason);
    expect(chat.usage!.completion_tokens).toBeGreaterThan(4);
    expect(deltas.length).toBeGreaterThan(chat.usage!.completion_tokens / 3);
  });

  it("surfaces a bad field as a 400 APIError naming the parameter", async () => {
    const error = await client.completions
      .create({ model: "tiny", prompt: "x", temperature: 7 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    expect((error as InstanceType<typeof OpenAI.APIError>).param).toBe("temperature");
  });
});

describe("the HTTP backend through selfalign serve", () => {
  it("scores, generates and tokenizes exactly as the embedded backend", async () => {
    process.env.SELFALIGN_SERVE_TEST_KEY = API_KEY;
    const http = createOpenAICompatibleBackend({
      baseUrls: [server.url],
      model: "tiny",
      apiKeyEnv: "SELFALIGN_SERVE_TEST_KEY",
      returnTokenIds: true,
      concurrencyPerEndpoint: 1,
    });
    const context = embedded.capabilities().maxContext;
    expect(await http.models()).toEqual([
      { id: "tiny", ownedBy: "selfalign", maxModelLen: context, metaContext: context },
    ]);
    const prompt = "Question: which is right?\nAnswer:";
    const continuations = [" yes", " no, it is not", " (B)"];
    const viaHttp = await http.score(prompt, continuations);
    const direct = await embedded.score(prompt, continuations);
    for (let i = 0; i < continuations.length; i++) {
      expect(viaHttp[i]!.logprob).toBeCloseTo(direct[i]!.logprob, 4);
      expect(Math.abs(viaHttp[i]!.logprob - direct[i]!.logprob)).toBeLessThan(1e-4);
      expect(viaHttp[i]!.tokens.map((token) => token.token)).toEqual(direct[i]!.tokens.map((token) => token.token));
      expect(viaHttp[i]!.tokens.map((token) => token.text).join("")).toBe(continuations[i]);
    }
    // The k most likely tokens at each position come through too.
    const [topHttp] = await http.score(prompt, [" no, it is not"], { topLogprobs: 2 });
    const [topDirect] = await embedded.score(prompt, [" no, it is not"], { topLogprobs: 2 });
    topHttp!.tokens.forEach((token, i) => {
      const expected = topDirect!.tokens[i]!.top!;
      expect(token.top?.map((t) => t.token)).toEqual(expected.map((t) => t.token));
      token.top?.forEach((t, k) => {
        expect(t.logprob).toBeCloseTo(expected[k]!.logprob, 4);
      });
    });
    const requests = [{ prompt: "One two", temperature: 0, maxTokens: 6 }];
    const [generatedHttp] = await completeAll(http, requests);
    const [generatedDirect] = await completeAll(embedded, requests);
    expect(generatedHttp!.completions[0]!.text).toBe(generatedDirect!.completions[0]!.text);
    expect(await http.tokenize("Hello, world!")).toEqual(await embedded.tokenize("Hello, world!"));
    const ids = await embedded.tokenize("round trip");
    expect(await http.detokenize(ids)).toBe(await embedded.detokenize(ids));
    await http.close();
    delete process.env.SELFALIGN_SERVE_TEST_KEY;
  });
});

describe("errors in OpenAI's shape", () => {
  it("401 without the bearer token; /health stays open", async () => {
    const denied = await raw("/v1/models", { auth: false });
    expect(denied.status).toBe(401);
    expectOpenAIError(denied.body, "invalid_api_key");
    const health = await raw("/health", { auth: false });
    expect(health).toMatchObject({ status: 200, body: { status: "ok" } });
  });

  it("404 for unknown routes and unknown models", async () => {
    const route = await raw("/v1/engines", { method: "GET" });
    expect(route.status).toBe(404);
    expectOpenAIError(route.body, "not_found");
    const model = await raw("/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: "gpt-9", prompt: "x" }),
    });
    expect(model.status).toBe(404);
    expectOpenAIError(model.body, "model_not_found");
    expect(model.body.error.param).toBe("model");
  });

  it("400 for bad JSON and for bad fields, naming the field", async () => {
    const bad = await raw("/v1/completions", { method: "POST", body: "{not json" });
    expect(bad.status).toBe(400);
    expectOpenAIError(bad.body, "invalid_json");
    const field = await raw("/v1/completions", { method: "POST", body: JSON.stringify({ prompt: "x", n: 0 }) });
    expect(field.status).toBe(400);
    expectOpenAIError(field.body, "invalid_value");
    expect(field.body.error.param).toBe("n");
    const missing = await raw("/v1/chat/completions", { method: "POST", body: JSON.stringify({ messages: [] }) });
    expect(missing.status).toBe(400);
    expect(missing.body.error.param).toBe("messages");
  });

  it("413 for a body over the limit", async () => {
    const huge = JSON.stringify({ prompt: "x".repeat(1024 * 1024 + 10) });
    const response = await raw("/v1/completions", { method: "POST", body: huge });
    expect(response.status).toBe(413);
    expectOpenAIError(response.body, "request_too_large");
  });

  it("429 with retry-after when the concurrency limit is reached", async () => {
    // The embedded engine behind a gate, so the first request deterministically holds the only slot.
    const { model: gated, entered, open } = gatedModel();
    const limited = await startServer({ model: gated, port: 0, modelName: "tiny", maxConcurrent: 1 });
    try {
      const post = (prompt: string) =>
        fetch(`${limited.url}/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ prompt, max_tokens: 3, temperature: 0 }),
        });
      const first = post("first");
      await entered;
      const second = await post("second");
      expect(second.status).toBe(429);
      expect(second.headers.get("retry-after")).toBe("1");
      expectOpenAIError((await second.json()) as ErrorBody, "rate_limit_exceeded");
      open();
      const answered = await first;
      expect(answered.status).toBe(200);
      const body = (await answered.json()) as { choices: Array<{ text: string }> };
      expect(body.choices).toHaveLength(1);
    } finally {
      open();
      await limited.close();
    }
  });
});

describe("cancellation", () => {
  it("aborts the model's work when the client disconnects", async () => {
    const { model, entered, open } = gatedModel();
    const local = await startServer({ model, port: 0, modelName: "tiny" });
    try {
      const controller = new AbortController();
      const request = fetch(`${local.url}/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "bye", max_tokens: 3 }),
        signal: controller.signal,
      }).catch((error: unknown) => error);
      const signal = await entered;
      expect(signal?.aborted).toBe(false);
      controller.abort();
      expect(await request).toBeInstanceOf(Error);
      const outcome = await Promise.race([
        new Promise<string>((resolve) => signal?.addEventListener("abort", () => resolve("aborted"), { once: true })),
        new Promise<string>((resolve) => setTimeout(() => resolve("still running after 10 s"), 10_000).unref()),
      ]);
      expect(outcome).toBe("aborted");
    } finally {
      open();
      await local.close();
    }
  });
});

describe("selfalign serve (CLI)", () => {
  it("prints its URL, answers, and exits cleanly on SIGINT", async () => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/cli/cli.ts",
        "serve",
        "--model",
        modelPath,
        "--port",
        "0",
        "--parallel",
        "1",
        "--threads",
        "1",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(stdout);
        if (match) resolve(match[1]!);
      });
      child.on("exit", (code) => reject(new Error(`serve exited early (${code}): ${stderr}`)));
    });
    const models = (await (await fetch(`${url}/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data[0]!.id).toBe("tiny");
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(stderr).toContain("stopping");
  });
});
