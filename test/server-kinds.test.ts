/**
 * What the HTTP backend learns from a server before it sends work: its kind (which grammar field it reads) and its
 * context window. Loopback mock servers answer `/v1/models`, `/version` and `/props` as these servers' code does:
 * - vLLM, `vllm/entrypoints/openai/models/serving.py` + `engine/protocol.py` ModelCard (`owned_by: "vllm"`,
 *   `max_model_len`), `GET /version` -> `{version}`; `completion/protocol.py` (main at 002032ee) reads a grammar
 *   only from `structured_outputs.grammar` (the `guided_*` fields were removed in v0.12, and unknown fields are
 *   ignored); releases before v0.12 read `guided_grammar`.
 * - SGLang, `python/sglang/srt/entrypoints/openai/protocol.py` (main at 004c82e0): ModelCard `owned_by: "sglang"`,
 *   `max_model_len`; CompletionRequest `ebnf`.
 * - llama.cpp server, `tools/server/server-context.cpp`: `/v1/models` entries `owned_by: "llamacpp"` with `meta`
 *   (`n_ctx` = the per-slot context in current builds, only `n_ctx_train` in older ones); `GET /props`
 *   `default_generation_settings.n_ctx` (per slot); a grammar in `grammar`.
 * And `selfalign serve` itself, on a real engine: it reports its context in both forms and honours a grammar sent
 * in any of these fields.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { completeAll, type LanguageModel } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import type { OpenAICompatibleBackend } from "../src/backends/openai-compatible/index.js";
import { createBackend } from "../src/backends/registry.js";
import { writeTinyModel } from "../src/gguf/index.js";
import type { ProgressEvent } from "../src/progress/progress-event.js";
import { type StartServerResult, startServer } from "../src/serve/server.js";

interface Mock {
  url: string;
  bodies: Array<Record<string, unknown>>;
  paths: string[];
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

const completion = {
  id: "cmpl-1",
  object: "text_completion",
  created: 0,
  model: "m",
  choices: [{ index: 0, text: "yes", finish_reason: "stop", logprobs: null }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
};

/** A server answering `routes` (path -> JSON) and any completions request with `completion`. */
async function mock(routes: Record<string, unknown>): Promise<Mock> {
  const state: Mock = { url: "", bodies: [], paths: [] };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const path = (request.url ?? "/").split("?")[0]!;
      state.paths.push(path);
      if (path in routes) return send(response, 200, routes[path]);
      if (path === "/v1/completions") {
        state.bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>);
        return send(response, 200, completion);
      }
      send(response, 404, { detail: "Not Found" });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return state;
}

const vllmModels = (maxModelLen: number) => ({
  object: "list",
  data: [
    { id: "m", object: "model", created: 0, owned_by: "vllm", root: "m", parent: null, max_model_len: maxModelLen },
  ],
});

async function backendFor(
  url: string,
  options: Record<string, unknown> = {},
): Promise<{ backend: OpenAICompatibleBackend; warnings: string[] }> {
  const warnings: string[] = [];
  const backend = (await createBackend(
    { spec: `openai:${url}#m`, maxRetries: 0, ...options },
    { onProgress: (event: ProgressEvent) => event.type === "message" && warnings.push(event.text) },
  )) as OpenAICompatibleBackend;
  return { backend, warnings };
}

const grammar = 'root ::= "yes" | "no"';

describe("the server's kind decides the grammar field", () => {
  it("vLLM >= 0.12: structured_outputs.grammar, nothing else", async () => {
    const server = await mock({ "/v1/models": vllmModels(32768), "/version": { version: "0.12.0" } });
    const { backend } = await backendFor(server.url);
    const [result] = await completeAll(backend, [{ prompt: "Q", grammar, maxTokens: 2 }]);
    expect(server.bodies[0]).toMatchObject({ structured_outputs: { grammar } });
    expect(server.bodies[0]).not.toHaveProperty("guided_grammar");
    expect(server.bodies[0]).not.toHaveProperty("grammar");
    expect(result!.warnings).toBeUndefined();
    expect(backend.capabilities()).toMatchObject({ grammar: true, maxContext: 32768 });
    expect(await backend.serverInfo()).toMatchObject({ kind: "vllm", version: "0.12.0", contextSize: 32768 });
  });

  it("vLLM before 0.12: guided_grammar", async () => {
    const server = await mock({ "/v1/models": vllmModels(4096), "/version": { version: "0.10.1.1" } });
    const { backend } = await backendFor(server.url);
    await completeAll(backend, [{ prompt: "Q", grammar }]);
    expect(server.bodies[0]).toMatchObject({ guided_grammar: grammar });
    expect(server.bodies[0]).not.toHaveProperty("structured_outputs");
  });

  it("SGLang: ebnf", async () => {
    const server = await mock({
      "/v1/models": {
        object: "list",
        data: [{ id: "m", object: "model", created: 0, owned_by: "sglang", root: "m", max_model_len: 8192 }],
      },
    });
    const { backend } = await backendFor(server.url);
    await completeAll(backend, [{ prompt: "Q", grammar }]);
    expect(server.bodies[0]).toMatchObject({ ebnf: grammar });
    expect(server.bodies[0]).not.toHaveProperty("grammar");
    expect(backend.capabilities().maxContext).toBe(8192);
  });

  it("llama.cpp server: grammar; the context from meta.n_ctx, or from /props on older builds", async () => {
    const current = await mock({
      "/v1/models": {
        object: "list",
        data: [
          {
            id: "m",
            object: "model",
            created: 0,
            owned_by: "llamacpp",
            meta: { vocab_type: 1, n_vocab: 32000, n_ctx: 3072, n_ctx_train: 4096, n_embd: 4096 },
          },
        ],
      },
    });
    const { backend } = await backendFor(current.url);
    await completeAll(backend, [{ prompt: "Q", grammar }]);
    expect(current.bodies[0]).toMatchObject({ grammar });
    expect(current.bodies[0]).not.toHaveProperty("guided_grammar");
    expect(backend.capabilities().maxContext).toBe(3072);

    const older = await mock({
      "/v1/models": {
        object: "list",
        data: [{ id: "m", object: "model", created: 0, owned_by: "llamacpp", meta: { n_ctx_train: 4096 } }],
      },
      "/props": { default_generation_settings: { n_ctx: 2048, params: {} }, total_slots: 4 },
    });
    const { backend: olderBackend } = await backendFor(older.url);
    expect(olderBackend.capabilities().maxContext).toBe(2048);
    expect(older.paths).toContain("/props");
  });

  it("an unknown server: both old fields, a warning with the result, capabilities().grammar false", async () => {
    const server = await mock({ "/v1/models": { object: "list", data: [{ id: "m", object: "model" }] } });
    const { backend, warnings } = await backendFor(server.url);
    expect(warnings).toEqual([expect.stringMatching(/does not report its context window; assuming 4096/)]);
    const [result] = await completeAll(backend, [{ prompt: "Q", grammar }]);
    expect(server.bodies[0]).toMatchObject({ grammar, guided_grammar: grammar });
    expect(result!.warnings).toEqual([expect.stringMatching(/kind is unknown .* may have been ignored/)]);
    expect(backend.capabilities()).toMatchObject({ grammar: false, maxContext: 4096 });
  });

  it("serverKind and contextSize in the config win, and then the server is not asked", async () => {
    const server = await mock({ "/v1/models": vllmModels(32768) });
    const { backend } = await backendFor(server.url, { serverKind: "sglang", contextSize: 1000 });
    expect(server.paths).toEqual([]);
    await completeAll(backend, [{ prompt: "Q", grammar }]);
    expect(server.bodies[0]).toMatchObject({ ebnf: grammar });
    expect(backend.capabilities().maxContext).toBe(1000);
  });

  it("a server that cannot be reached leaves the defaults, with a warning", async () => {
    const gone = await mock({});
    const url = gone.url;
    await afterEachClose();
    const { backend, warnings } = await backendFor(url);
    expect(warnings).toEqual([
      expect.stringMatching(/could not ask the server what it serves .*assuming a 4096-token/),
    ]);
    expect(backend.capabilities().maxContext).toBe(4096);
  });
});

async function afterEachClose(): Promise<void> {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe("options a server cannot apply come back with the call", () => {
  it("n-gram penalties: a warning on each result, reported once through onProgress", async () => {
    const server = await mock({ "/v1/models": vllmModels(4096) });
    const { backend, warnings } = await backendFor(server.url);
    const request = { prompt: "Q", ngramPenalties: [{ n: 2, penalty: 0.5 }] };
    const results = await completeAll(backend, [request, request, { prompt: "plain" }]);
    expect(results[0]!.warnings).toEqual([expect.stringMatching(/n-gram penalties .* were not applied/)]);
    expect(results[1]!.warnings).toEqual(results[0]!.warnings);
    expect(results[2]!.warnings).toBeUndefined();
    expect(warnings.filter((text) => /n-gram/.test(text))).toHaveLength(1);
  });
});

describe("selfalign serve", () => {
  let dir: string;
  let engine: LanguageModel;
  let serve: StartServerResult;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "selfalign-kinds-"));
    const path = join(dir, "tiny.gguf");
    await writeTinyModel(path, { seed: 7, contextLength: 384 });
    engine = await createLlamaCppBackend({ model: path, contextSize: 384, sequences: 1, threads: 1, seed: 1 });
    serve = await startServer({ model: engine, port: 0, modelName: "tiny" });
  });
  afterAll(async () => {
    await serve?.close();
    await engine?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reports its context as max_model_len and meta.n_ctx, and the backend reads it", async () => {
    const models = (await (await fetch(`${serve.url}/models`)).json()) as { data: Array<Record<string, unknown>> };
    expect(models.data[0]).toMatchObject({ owned_by: "selfalign", max_model_len: 384, meta: { n_ctx: 384 } });
    const backend = await createBackend(`openai:${serve.url}#tiny`);
    expect(backend.capabilities()).toMatchObject({ maxContext: 384, grammar: true });
  });

  it("honours a grammar in grammar, structured_outputs.grammar, guided_grammar and ebnf", async () => {
    const constrained = 'root ::= "yes!" | "no!"';
    const answers: string[] = [];
    for (const field of [
      { grammar: constrained },
      { structured_outputs: { grammar: constrained } },
      { guided_grammar: constrained },
      { ebnf: constrained },
      {},
    ]) {
      const response = await fetch(`${serve.url}/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", prompt: "Answer:", max_tokens: 6, temperature: 0, ...field }),
      });
      answers.push(((await response.json()) as { choices: Array<{ text: string }> }).choices[0]!.text);
    }
    for (const answer of answers.slice(0, 4)) expect(["yes!", "no!"]).toContain(answer);
    // Without a grammar the random-weight model says something else: the grammar did the constraining.
    expect(["yes!", "no!"]).not.toContain(answers[4]);
  });
});
