/**
 * `selfalign serve` against requests a hostile or careless client sends, on a tiny GGUF written here: token ids
 * outside the vocabulary (llama.cpp aborts the whole process on one), prompts longer than the context, `max_tokens`
 * beyond it, chat log-probabilities, and completion log-probabilities of text that is not valid UTF-8. Each is
 * answered (a 400 where the request cannot be served) and the server keeps serving. Then the CLI's limits: the
 * body limit, the access log and the adapter flag.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend, type LlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { createOpenAICompatibleBackend } from "../src/backends/openai-compatible/index.js";
import { BackendError, ConfigError, ContextLengthError } from "../src/errors/index.js";
import { BYTE_VOCAB_SIZE, writeTinyModel } from "../src/gguf/index.js";
import { type StartServerResult, startServer } from "../src/serve/server.js";

const CONTEXT = 256;
let dir: string;
let modelPath: string;
let embedded: LlamaCppBackend;
let server: StartServerResult;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-serve-limits-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, { seed: 3, contextLength: 512 });
  embedded = await createLlamaCppBackend({
    model: modelPath,
    contextSize: CONTEXT,
    sequences: 2,
    threads: 1,
    seed: 1,
  });
  server = await startServer({ model: embedded, port: 0, modelName: "tiny" });
});

afterAll(async () => {
  await server?.close();
  await embedded?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  contentType: string | null;
  // biome-ignore lint/suspicious/noExplicitAny: response bodies of several shapes
  body: any;
}

async function post(path: string, body: unknown): Promise<Answer> {
  const response = await fetch(`${server.url.replace(/\/v1$/, "")}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // a stream: kept as text
  }
  return { status: response.status, contentType: response.headers.get("content-type"), body: parsed };
}

function expectInvalidRequest(answer: Answer, param: string, code: string) {
  expect(answer.status).toBe(400);
  expect(answer.contentType).toBe("application/json");
  expect(answer.body.error.type).toBe("invalid_request_error");
  expect(answer.body.error.param).toBe(param);
  expect(answer.body.error.code).toBe(code);
}

async function stillServing() {
  const answer = await post("/v1/completions", { prompt: "still", max_tokens: 2, temperature: 0 });
  expect(answer.status).toBe(200);
  expect(answer.body.usage.completion_tokens).toBeGreaterThan(0);
}

describe("token ids from the client", () => {
  it("refuses ids outside the vocabulary, negative and non-integer ids with a 400, and keeps serving", async () => {
    for (const tokens of [[99_999_999], [5, BYTE_VOCAB_SIZE], [2 ** 32 + 5]]) {
      const answer = await post("/detokenize", { tokens });
      expectInvalidRequest(answer, "tokens", "invalid_value");
      expect(answer.body.error.message).toContain(`0 to ${BYTE_VOCAB_SIZE - 1}`);
    }
    for (const prompt of [
      [999_999_999, 5],
      [
        [5, 6],
        [7, BYTE_VOCAB_SIZE + 1],
      ],
    ]) {
      const answer = await post("/v1/completions", { prompt, max_tokens: 2 });
      expectInvalidRequest(answer, "prompt", "invalid_value");
    }
    // Also behind /v1, and streamed: the stream never opens.
    expectInvalidRequest(await post("/v1/detokenize", { tokens: [100_000] }), "tokens", "invalid_value");
    expectInvalidRequest(
      await post("/v1/completions", { prompt: [100_000], max_tokens: 2, stream: true }),
      "prompt",
      "invalid_value",
    );
    for (const tokens of [[-1], [1.5], ["7"], [null], "12"]) {
      const answer = await post("/detokenize", { tokens });
      expect(answer.status).toBe(400);
      expect(answer.body.error.type).toBe("invalid_request_error");
    }
    const negativePrompt = await post("/v1/completions", { prompt: [5, -3], max_tokens: 2 });
    expect(negativePrompt.status).toBe(400);
    await stillServing();
  });

  it("answers huge id arrays: detokenized when valid, refused when one id is bad or the prompt cannot fit", async () => {
    const many = Array.from({ length: 200_000 }, (_, i) => 40 + (i % 60));
    const valid = await post("/detokenize", { tokens: many });
    expect(valid.status).toBe(200);
    expect(valid.body.content.length).toBeGreaterThan(100_000);
    const oneBad = await post("/detokenize", { tokens: [...many.slice(0, 150_000), 1e9] });
    expectInvalidRequest(oneBad, "tokens", "invalid_value");
    expect(oneBad.body.error.message).toContain("position 150000");
    const longPrompt = await post("/v1/completions", { prompt: many, max_tokens: 1 });
    expectInvalidRequest(longPrompt, "prompt", "context_length_exceeded");
    await stillServing();
  });

  it("the embedded backend itself refuses bad ids with a ConfigError instead of reaching llama.cpp", async () => {
    await expect(embedded.detokenize([BYTE_VOCAB_SIZE])).rejects.toBeInstanceOf(ConfigError);
    await expect(embedded.detokenize([-1])).rejects.toThrow(/tokens: entry 0 is -1, not a token id/);
    await expect(embedded.scoreTokens([1], [[5, 1e6]])).rejects.toBeInstanceOf(ConfigError);
    expect(embedded.capabilities().vocabularySize).toBe(BYTE_VOCAB_SIZE);
    // Byte tokens start at id 3: 40 and 41 are the bytes 0x25 and 0x26.
    expect(await embedded.detokenize([40, 41])).toBe("%&");
  });
});

describe("the context", () => {
  const tooLong = "x".repeat(CONTEXT + 20);

  it("a prompt longer than the context is a 400 context_length_exceeded, plain and streamed, completions and chat", async () => {
    for (const stream of [false, true]) {
      const completion = await post("/v1/completions", { prompt: tooLong, max_tokens: 4, stream });
      expectInvalidRequest(completion, "prompt", "context_length_exceeded");
      expect(completion.body.error.message).toContain(`maximum context length is ${CONTEXT} tokens`);
      const chat = await post("/v1/chat/completions", {
        messages: [{ role: "user", content: tooLong }],
        stream,
      });
      expectInvalidRequest(chat, "messages", "context_length_exceeded");
    }
    // Scoring an echoed prompt too long for the scoring context, and token-id prompts.
    expectInvalidRequest(
      await post("/v1/completions", { prompt: tooLong, max_tokens: 0, echo: true, logprobs: 1 }),
      "prompt",
      "context_length_exceeded",
    );
    await stillServing();
  });

  it("the HTTP backend does not retry a prompt that can never fit", async () => {
    const retries: string[] = [];
    const http = createOpenAICompatibleBackend({
      baseUrls: [server.url],
      model: "tiny",
      maxRetries: 5,
      initialBackoffMs: 1,
      maxBackoffMs: 5,
      onRetry: (event) => retries.push(event.reason),
    });
    const error = await completeAll(http, [{ prompt: tooLong, maxTokens: 4 }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).statusCode).toBe(400);
    expect((error as BackendError).retryable).toBe(false);
    expect((error as BackendError).message).toMatch(/maximum context length/);
    expect(http.requestCounts()).toEqual([{ baseUrl: server.url, sent: 1 }]);
    expect(retries).toEqual([]);
    await http.close();
  });

  it("an explicit max_tokens beyond what the prompt leaves is a 400, as in vLLM; without one the default is capped", async () => {
    const prompt = "y".repeat(CONTEXT - 12);
    const room = CONTEXT - 1 - (await embedded.tokenize(prompt, { addBos: true })).length;
    expect(room).toBeGreaterThan(0);
    expect(room).toBeLessThan(16);
    for (const stream of [false, true]) {
      const huge = await post("/v1/completions", {
        prompt: "hi",
        max_tokens: 1_000_000_000,
        ignore_eos: true,
        stream,
      });
      expectInvalidRequest(huge, "max_tokens", "context_length_exceeded");
      expect(huge.body.error.message).toContain("'max_tokens' is too large: 1000000000");
      const chat = await post("/v1/chat/completions", {
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 100_000,
        stream,
      });
      expectInvalidRequest(chat, "max_tokens", "context_length_exceeded");
    }
    expectInvalidRequest(
      await post("/v1/completions", { prompt, max_tokens: room + 1 }),
      "max_tokens",
      "context_length_exceeded",
    );
    const exact = await post("/v1/completions", { prompt, max_tokens: room, ignore_eos: true, temperature: 0 });
    expect(exact.status).toBe(200);
    expect(exact.body.usage.completion_tokens).toBe(room);
    // No max_tokens: the default of 16 is more than fits, so it is capped at the room left.
    const capped = await post("/v1/completions", { prompt, ignore_eos: true, temperature: 0 });
    expect(capped.status).toBe(200);
    expect(capped.body.usage.completion_tokens).toBe(room);
    expect(capped.body.choices[0].finish_reason).toBe("length");
  });

  it("the embedded backend refuses rather than caps when asked to (maxTokensOverflow: refuse)", async () => {
    const request = { prompt: "hi", maxTokens: CONTEXT * 2, allowEos: false, temperature: 0 };
    const error = await completeAll(embedded, [{ ...request, maxTokensOverflow: "refuse" }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContextLengthError);
    expect(error).toMatchObject({ maxTokens: CONTEXT * 2, contextSize: CONTEXT, retryable: false });
    const [capped] = await completeAll(embedded, [{ ...request, maxTokens: 8 }]);
    expect(capped!.completions[0]!.tokenCount).toBe(8);
  });
});

describe("log-probabilities", () => {
  it("chat logprobs: true is a 400 rather than a silent null", async () => {
    const messages = [{ role: "user", content: "hi" }];
    expectInvalidRequest(
      await post("/v1/chat/completions", { messages, max_tokens: 2, logprobs: true }),
      "logprobs",
      "unsupported",
    );
    expectInvalidRequest(
      await post("/v1/chat/completions", { messages, max_tokens: 2, logprobs: true, top_logprobs: 2, stream: true }),
      "logprobs",
      "unsupported",
    );
    const plain = await post("/v1/chat/completions", { messages, max_tokens: 2, logprobs: false });
    expect(plain.status).toBe(200);
  });

  it("are those of the tokens generated, even when the text is not valid UTF-8 (checked against llama.cpp's logits)", async () => {
    const prompt = "abc";
    const maxTokens = 8;
    const [direct] = await completeAll(embedded, [{ prompt, temperature: 0, maxTokens, allowEos: false }]);
    const generated = direct!.completions[0]!;
    expect(generated.tokens).toHaveLength(maxTokens);
    // The case that matters: this text does not tokenise back into the tokens that wrote it.
    const promptTokens = await embedded.tokenize(prompt, { addBos: true });
    const retokenised = (await embedded.tokenize(prompt + generated.text, { addBos: true })).slice(promptTokens.length);
    expect(retokenised).not.toEqual(generated.tokens);

    const answer = await post("/v1/completions", {
      prompt,
      max_tokens: maxTokens,
      temperature: 0,
      ignore_eos: true,
      logprobs: 2,
      return_tokens_as_token_ids: true,
    });
    expect(answer.status).toBe(200);
    const choice = answer.body.choices[0];
    expect(choice.text).toBe(generated.text);
    const logprobs = choice.logprobs as {
      tokens: string[];
      token_logprobs: number[];
      top_logprobs: Array<Record<string, number>>;
      text_offset: number[];
    };
    expect(logprobs.tokens).toHaveLength(answer.body.usage.completion_tokens);
    expect(logprobs.tokens).toEqual(generated.tokens!.map((token) => `token_id:${token}`));

    // Independent: llama.cpp's full logits over prompt + generated tokens, log-softmax taken here.
    const llama = await getLlama({ gpu: false, build: "never" });
    const model = await llama.loadModel({ modelPath });
    try {
      const context = await model.createContext({
        contextSize: 64,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        threads: 1,
      });
      const all = [...promptTokens, ...generated.tokens!];
      const items: ControlledEvaluateInputItem[] = all
        .slice(0, -1)
        .map((token) => [token as Token, { generateNext: { logits: true } }]);
      const evaluated = await context.getSequence().controlledEvaluate(items);
      generated.tokens!.forEach((token, j) => {
        const logits = evaluated[promptTokens.length - 1 + j]!.next!.logits!;
        const values = Array.from({ length: BYTE_VOCAB_SIZE }, (_, id) => logits.get(id as Token) ?? -Infinity);
        const max = Math.max(...values);
        const logSum = Math.log(values.reduce((sum, value) => sum + Math.exp(value - max), 0)) + max;
        expect(logprobs.token_logprobs[j]).toBeCloseTo(logits.get(token as Token)! - logSum, 4);
        // Greedy: the chosen token is the most likely one among the alternatives returned.
        const top = logprobs.top_logprobs[j]!;
        expect(Math.max(...Object.values(top))).toBeCloseTo(logprobs.token_logprobs[j]!, 6);
        expect(values.indexOf(max)).toBe(token);
      });
      await context.dispose();
    } finally {
      await model.dispose();
    }
    for (let i = 1; i < logprobs.text_offset.length; i++)
      expect(logprobs.text_offset[i]!).toBeGreaterThanOrEqual(logprobs.text_offset[i - 1]!);
  });

  it("of a text cut at a stop string are those of the tokens that wrote the text kept", async () => {
    const request = { prompt: "Hello", max_tokens: 12, temperature: 0, ignore_eos: true };
    const [uncut] = await completeAll(embedded, [{ prompt: "Hello", maxTokens: 12, temperature: 0, allowEos: false }]);
    const { text, tokens } = uncut!.completions[0]!;
    // A stop string after a broken UTF-8 character, so the text kept does not tokenise back into its tokens.
    const broken = text.indexOf("\uFFFD");
    expect(broken).toBeGreaterThanOrEqual(0);
    const stop = [...text.slice(broken + 1)].find((character) => character !== "\uFFFD" && character.trim() !== "");
    expect(stop).toBeDefined();
    const cut = await post("/v1/completions", {
      ...request,
      stop: [stop],
      logprobs: 1,
      return_tokens_as_token_ids: true,
    });
    expect(cut.body.choices[0].text).toBe(text.slice(0, text.indexOf(stop!)));
    const kept = (cut.body.choices[0].logprobs.tokens as string[]).map((name) =>
      Number(name.slice("token_id:".length)),
    );
    expect(kept.length).toBeGreaterThan(broken);
    expect(kept.length).toBeLessThan(tokens!.length);
    expect(kept).toEqual(tokens!.slice(0, kept.length));
    const spelled = await embedded.detokenize(kept);
    expect(spelled.startsWith(cut.body.choices[0].text)).toBe(true);
    expect(spelled.includes(stop!)).toBe(false);
  });
});

describe("selfalign serve (CLI): body limit, access log, adapter flag", () => {
  const cli = (args: string[]) =>
    spawn(process.execPath, ["--import", "tsx", "src/cli/cli.ts", "serve", "--model", modelPath, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });

  it("takes --max-body and --log-requests: a 413 beyond the limit, a line per request with status, tokens and ms", async () => {
    const child = cli(["--port", "0", "--parallel", "1", "--threads", "1", "--max-body", "2k", "--log-requests"]);
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          const match = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(stdout);
          if (match) resolve(match[1]!);
        });
        child.on("exit", (code) => reject(new Error(`serve exited early (${code}): ${stderr}`)));
      });
      const send = (body: string) =>
        fetch(`${url}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect((await send(JSON.stringify({ prompt: "x".repeat(3000) }))).status).toBe(413);
      // Under the limit but over 1 KiB (an ignored field pads it).
      const answer = await send(
        JSON.stringify({ prompt: "x y", max_tokens: 3, temperature: 0, user: "u".repeat(1500) }),
      );
      expect(answer.status).toBe(200);
      const { usage } = (await answer.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
      expect((await fetch(`${url}/models`)).status).toBe(200);
      const lines = () => stderr.split("\n");
      await expect.poll(() => lines().filter((line) => line.startsWith("GET /v1/models")).length).toBe(1);
      expect(lines()).toContainEqual(expect.stringMatching(/^POST \/v1\/completions 413 \d+ms$/));
      expect(lines()).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^POST /v1/completions 200 prompt_tokens=${usage.prompt_tokens} completion_tokens=${usage.completion_tokens} \\d+ms$`,
          ),
        ),
      );
      expect(lines()).toContainEqual(expect.stringMatching(/^GET \/v1\/models 200 \d+ms$/));
    } finally {
      const exited = new Promise((resolve) => child.on("exit", resolve));
      child.kill("SIGINT");
      await exited;
    }
  });

  it("names the adapter flag --adapter, as chat and eval do, and still takes --lora", async () => {
    const help = await run(cli(["--help"]));
    expect(help.stdout).toContain("--adapter <path[:scale]>");
    expect(help.stdout).not.toContain("--lora");
    for (const flag of ["--adapter", "--lora"]) {
      const missing = join(dir, `missing-${flag.slice(2)}.gguf`);
      const result = await run(cli([flag, missing, "--port", "0"]));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(`LoRA adapter not found: expected a GGUF adapter file at ${missing}`);
    }
  });
});

function run(child: ReturnType<typeof spawn>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}
