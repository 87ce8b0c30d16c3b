import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeTinyModel } from "../gguf/index.js";
import { completeAll } from "./language-model.js";
import { ConfigError } from "../errors/index.js";
import { createBackend, parseBackendSpec, resolveBackendConfig, validateBackendConfig } from "./registry.js";

describe("parseBackendSpec", () => {
  it("reads llama-cpp paths and hf: URIs", () => {
    expect(parseBackendSpec("llama-cpp:./m.gguf")).toEqual({ type: "llama-cpp", model: "./m.gguf" });
    expect(parseBackendSpec("llama-cpp:hf:owner/repo/file.gguf")).toEqual({
      type: "llama-cpp",
      model: "hf:owner/repo/file.gguf",
    });
    expect(parseBackendSpec("models/base.Q8_0.gguf")).toEqual({ type: "llama-cpp", model: "models/base.Q8_0.gguf" });
    expect(parseBackendSpec("hf:owner/repo/file.gguf")).toEqual({
      type: "llama-cpp",
      model: "hf:owner/repo/file.gguf",
    });
  });

  it("reads one or several OpenAI-compatible base URLs and the model name", () => {
    expect(parseBackendSpec("openai:http://host:8000/v1#model-name")).toEqual({
      type: "openai",
      baseUrls: ["http://host:8000/v1"],
      model: "model-name",
    });
    expect(parseBackendSpec("openai:http://a/v1,http://b/v1#org/Model-7B")).toEqual({
      type: "openai",
      baseUrls: ["http://a/v1", "http://b/v1"],
      model: "org/Model-7B",
    });
    expect(parseBackendSpec("https://api.example.com/v1#m")).toMatchObject({ type: "openai", model: "m" });
  });

  it("names what is missing or wrong", () => {
    expect(() => parseBackendSpec("openai:http://host:8000/v1")).toThrow(/names no model; append #<model-name>/);
    expect(() => parseBackendSpec("openai:not a url#m")).toThrow(ConfigError);
    expect(() => parseBackendSpec("openai:ftp://host/v1#m")).toThrow(/baseUrls\.0/);
    expect(() => parseBackendSpec("llama-cpp:")).toThrow(/field "model"/);
    expect(() => parseBackendSpec("mystery:thing")).toThrow(/not recognised; expected one of: llama-cpp:/);
    expect(() => parseBackendSpec("  ")).toThrow(/backend is empty/);
  });
});

describe("resolveBackendConfig", () => {
  it("reads a spec with the options of its backend", () => {
    expect(resolveBackendConfig({ spec: "openai:http://h:8000/v1#m", apiKeyEnv: "KEY", contextSize: 4096 })).toEqual({
      type: "openai",
      baseUrls: ["http://h:8000/v1"],
      model: "m",
      apiKeyEnv: "KEY",
      contextSize: 4096,
    });
    expect(resolveBackendConfig({ spec: "llama-cpp:m.gguf", contextSize: 2048, threads: 2 })).toEqual({
      type: "llama-cpp",
      model: "m.gguf",
      contextSize: 2048,
      threads: 2,
    });
    expect(resolveBackendConfig("m.gguf")).toEqual({ type: "llama-cpp", model: "m.gguf" });
  });

  it("names an option the backend does not have, or a field that belongs in the spec", () => {
    expect(() => resolveBackendConfig({ spec: "llama-cpp:m.gguf", apiKeyEnv: "KEY" })).toThrow(/field "apiKeyEnv"/);
    expect(() => resolveBackendConfig({ spec: "openai:http://h/v1#m", threads: 2 })).toThrow(/field "threads"/);
    expect(() => resolveBackendConfig({ spec: "openai:http://h/v1#m", model: "other" })).toThrow(
      /field "model" comes from "spec"/,
    );
    expect(() => resolveBackendConfig({ spec: "openai:http://h/v1#m", serverKind: "tgi" })).toThrow(
      /field "serverKind"/,
    );
  });
});

describe("validateBackendConfig", () => {
  it("accepts full configs of both types", () => {
    const llama = {
      type: "llama-cpp" as const,
      model: "m.gguf",
      contextSize: 2048,
      sequences: 4,
      threads: 1,
      lora: [{ path: "a.gguf", scale: 0.5 }],
      seed: 3,
    };
    expect(validateBackendConfig(llama)).toEqual(llama);
    const openai = {
      type: "openai" as const,
      baseUrls: ["http://127.0.0.1:8000/v1"],
      model: "m",
      apiKeyEnv: "MY_KEY",
      concurrencyPerEndpoint: 16,
      maxRetries: 0,
    };
    expect(validateBackendConfig(openai)).toEqual(openai);
  });

  it("throws a ConfigError naming the bad field", () => {
    const cases: Array<[unknown, string]> = [
      [{ type: "vllm", model: "m" }, "type"],
      [{ type: "llama-cpp", model: "m", threads: 0 }, "threads"],
      [{ type: "llama-cpp", model: "m", lora: [{ scale: 1 }] }, "lora.0.path"],
      [{ type: "llama-cpp", model: "m", contextSzie: 10 }, "contextSzie"],
      [{ type: "openai", baseUrls: [], model: "m" }, "baseUrls"],
      [{ type: "openai", baseUrls: ["http://h/v1"], model: "m", apiKeyEnv: "sk-abc123" }, "apiKeyEnv"],
    ];
    for (const [config, field] of cases) {
      let caught: unknown;
      try {
        validateBackendConfig(config);
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(config)).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).field).toBe(field);
      expect((caught as Error).message).toContain(`"${field}"`);
    }
  });
});

describe("createBackend", () => {
  it("creates an OpenAI-compatible backend from a spec with options; told its context and kind, it asks nothing", async () => {
    const warnings: string[] = [];
    process.env.SELFALIGN_REGISTRY_KEY = "sk-registry";
    const backend = await createBackend(
      {
        spec: "openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1#tiny",
        apiKeyEnv: "SELFALIGN_REGISTRY_KEY",
        timeoutMs: 600_000,
        maxRetries: 2,
        concurrencyPerEndpoint: 3,
        contextSize: 8192,
        serverKind: "vllm",
      },
      { onProgress: (event) => event.type === "message" && warnings.push(event.text) },
    );
    delete process.env.SELFALIGN_REGISTRY_KEY;
    expect(backend.id).toBe("openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1#tiny");
    expect(backend.capabilities()).toMatchObject({
      complete: true,
      chat: true,
      ngramPenalty: false,
      parallel: 6,
      maxContext: 8192,
    });
    // Nothing listens on ports 9 and 10: asking would have failed with a warning.
    expect(warnings).toEqual([]);
    await backend.close();
  });

  it("loads an embedded llama-cpp backend from a string and generates with it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "selfalign-registry-"));
    try {
      const path = join(dir, "tiny.gguf");
      await writeTinyModel(path, { contextLength: 256, seed: 2 });
      const backend = await createBackend(`llama-cpp:${path}`);
      try {
        expect(backend.id).toContain("tiny.gguf");
        const [result] = await completeAll(backend, [{ prompt: "abc", temperature: 0, maxTokens: 4 }]);
        expect(result!.completions[0]!.tokenCount).toBeGreaterThan(0);
        expect(await backend.detokenize(await backend.tokenize("abc"))).toBe("abc");
      } finally {
        await backend.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
