import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../gguf/index.js";
import { completeAll } from "../language-model.js";
import { createLlamaCppBackend, type LlamaCppBackend } from "./index.js";
import { loadThreadpoolAddon } from "./persistent-threads.js";

// CI builds the addon (.ci/run installs a compiler) and sets this, so there the pooled path must be the one tested;
// elsewhere, without a compiler, the backend must still work without it.
const required = process.env.SELFALIGN_REQUIRE_NATIVE === "1";
const addon = loadThreadpoolAddon();

let dir: string;
let modelPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-threadpool-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, { layers: 2, dim: 64, heads: 4, kvHeads: 2, ffn: 128, seed: 3 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Threads of this process (Linux), or undefined elsewhere. */
function threadCount(): number | undefined {
  return process.platform === "linux" ? readdirSync("/proc/self/task").length : undefined;
}

const open = (persistentThreads: boolean) =>
  createLlamaCppBackend({
    model: modelPath,
    contextSize: 256,
    sequences: 2,
    threads: "auto",
    // Two threads even on one core (more threads than cores would make ggml's spinning barriers crawl).
    batchThreads: 2,
    persistentThreads,
  });

async function work(backend: LlamaCppBackend) {
  const completions = await completeAll(
    backend,
    ["The first prompt", "Another, longer prompt than the first", "A third"].map((prompt) => ({
      prompt,
      maxTokens: 24,
      temperature: 0,
      allowEos: false,
    })),
  );
  const scores = await backend.score("Some text and then", [" one", " two words", " three more words"]);
  return { texts: completions.map((c) => c.completions[0]?.text), logprobs: scores.map((s) => s.logprob) };
}

describe("persistent threadpool", () => {
  it("is built where CI requires it", () => {
    if (required) expect(addon.addon, "reason" in addon ? addon.reason : "").toBeDefined();
    else expect(addon.addon !== undefined || ("reason" in addon && addon.reason.length > 0)).toBe(true);
  });

  it("decodes and scores exactly as without it, keeps its threads for the engine's life and stops them on close", async () => {
    const before = threadCount();
    const pooled = await open(true);
    let pooledResult: Awaited<ReturnType<typeof work>>;
    try {
      expect(pooled.decodeStats().persistentThreads).toBe(addon.addon !== undefined);
      pooledResult = await work(pooled);
      if (addon.addon && before !== undefined) {
        // A worker besides the calling thread, started once and still there after the decode calls returned (ggml's
        // per-call pool would have joined it); the scoring context shares it.
        const during = threadCount() as number;
        expect(during - before).toBeGreaterThanOrEqual(1);
        await work(pooled);
        expect(threadCount()).toBe(during);
      }
      // "auto" decode threads measure nothing on a pool: every batch gets the batch threads.
      if (addon.addon) expect(pooled.decodeStats().threadChoices).toEqual({});
    } finally {
      await pooled.close();
    }
    const afterClose = threadCount();
    const plain = await open(false);
    try {
      expect(plain.decodeStats().persistentThreads).toBe(false);
      const plainResult = await work(plain);
      expect(plainResult.texts).toEqual(pooledResult.texts);
      for (const [i, logprob] of plainResult.logprobs.entries())
        expect(Math.abs(logprob - (pooledResult.logprobs[i] as number))).toBeLessThan(1e-5);
    } finally {
      await plain.close();
    }
    if (addon.addon && before !== undefined && afterClose !== undefined) {
      // The pool's worker is gone once the backend closed.
      const pooledAgain = await open(true);
      await work(pooledAgain);
      const withPool = threadCount() as number;
      await pooledAgain.close();
      expect(threadCount()).toBeLessThanOrEqual(withPool - 1);
    }
  });

  it("refuses a context that does not match what it is told, so it never reads a wrong layout", async () => {
    if (!addon.addon) {
      expect(required).toBe(false);
      return;
    }
    const backend = await open(true);
    try {
      const context = (backend as unknown as { parts: { context: import("node-llama-cpp").LlamaContext } }).parts
        .context;
      const native = (context as unknown as { _ctx: { getContextSize(): number } })._ctx;
      const pool = addon.addon.createPool(2, 0);
      try {
        expect(() =>
          addon.addon?.attach(pool, native, native.getContextSize(), context.totalSequences + 1, context.batchSize),
        ).toThrow(/not laid out|does not match/);
        expect(() =>
          addon.addon?.attach(pool, native, native.getContextSize() + 1, context.totalSequences, context.batchSize),
        ).toThrow(/does not match/);
        expect(() => addon.addon?.attach(pool, {}, 1, 1, 1)).toThrow(/not a node-llama-cpp native context/);
      } finally {
        addon.addon.release(pool);
      }
      // The backend's own pool is untouched by the refused attempts.
      expect((await work(backend)).texts).toHaveLength(3);
    } finally {
      await backend.close();
    }
  });
});
