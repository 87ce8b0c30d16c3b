import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BatchItem, getLlama, type LlamaContext, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../gguf/index.js";
import { type CompletionRequest, completeAll } from "../language-model.js";
import { createLlamaCppBackend } from "./index.js";
import { DecodeGate, gatherSequencesStrategy, shareBatch, tuneNativeBatches } from "./native-batch.js";

/** A stand-in for node-llama-cpp's native context that records what reaches it. */
class FakeNative {
  batch: Array<{ sequenceId: number; tokens: number[]; logits: boolean[] }> = [];
  size = 0;
  threads: number[] = [];
  decodes: Array<Array<{ sequenceId: number; tokens: number[]; logits: boolean[] }>> = [];
  initBatch(size: number) {
    this.size = size;
    this.batch = [];
  }
  addToBatch(sequenceId: number, _first: number, tokens: Uint32Array, logitIndexes: Uint32Array) {
    const start = this.batch.length;
    const positions: number[] = [];
    tokens.forEach((token, i) => {
      const logit = logitIndexes.includes(i);
      this.batch.push({ sequenceId, tokens: [token], logits: [logit] });
      if (logit) positions.push(start + i);
    });
    return Uint32Array.from(positions);
  }
  setThreads(threads: number) {
    this.threads.push(threads);
  }
  async decodeBatch() {
    this.decodes.push(this.batch);
  }
}

function fakeContext(native: object): LlamaContext {
  return { _ctx: native } as unknown as LlamaContext;
}

const u32 = (...values: number[]) => Uint32Array.from(values);

describe("tuneNativeBatches (on a stand-in native context)", () => {
  it("adds entries in sequence-id order and returns each entry's final batch positions", async () => {
    const native = new FakeNative();
    const context = fakeContext(native);
    const tuning = tuneNativeBatches(context, { decodeThreads: 1, batchThreads: 2 });
    expect(tuning.active).toBe(true);
    const ctx = (context as unknown as { _ctx: FakeNative })._ctx;
    ctx.initBatch(16);
    // node-llama-cpp adds in sampling order: sequence 2 (3 tokens, logits on the last), then 0, then 1.
    const of2 = ctx.addToBatch(2, 5, u32(20, 21, 22), u32(2));
    const of0 = ctx.addToBatch(0, 9, u32(10), u32(0));
    const of1 = ctx.addToBatch(1, 7, u32(11, 12), u32(0, 1));
    await ctx.decodeBatch();
    expect(native.decodes).toHaveLength(1);
    expect(native.decodes[0]?.map((entry) => entry.sequenceId)).toEqual([0, 1, 1, 2, 2, 2]);
    // Batch positions after reordering: sequence 0 at 0, sequence 1 at 1-2, sequence 2 at 3-5.
    expect([...of0]).toEqual([0]);
    expect([...of1]).toEqual([1, 2]);
    expect([...of2]).toEqual([5]);
    expect(tuning.stats()).toMatchObject({
      decodeCalls: 1,
      decodedTokens: 6,
      reorderedCalls: 1,
      callsBySize: { 6: 1 },
    });
  });

  it("refuses an entry that overflows the batch when it is added, as the addon does", () => {
    const native = new FakeNative();
    const context = fakeContext(native);
    tuneNativeBatches(context, { decodeThreads: 1, batchThreads: 1 });
    const ctx = (context as unknown as { _ctx: FakeNative })._ctx;
    ctx.initBatch(3);
    ctx.addToBatch(0, 0, u32(1, 2), u32(1));
    expect(() => ctx.addToBatch(1, 0, u32(3, 4), u32(1))).toThrow(RangeError);
    ctx.addToBatch(1, 0, u32(3), u32(0));
  });

  it("decodes small batches with the decode threads and long ones with the batch threads", async () => {
    const native = new FakeNative();
    const context = fakeContext(native);
    tuneNativeBatches(context, { decodeThreads: 1, batchThreads: 2 });
    const ctx = (context as unknown as { _ctx: FakeNative })._ctx;
    ctx.setThreads(7); // node-llama-cpp's own choice is ignored
    for (const size of [16, 100, 100, 1]) {
      ctx.initBatch(size);
      ctx.addToBatch(0, 0, new Uint32Array(size), u32(size - 1));
      await ctx.decodeBatch();
    }
    expect(native.threads).toEqual([1, 2, 1]);
  });

  it("with automatic decode threads, measures 1 thread against the batch threads and keeps the faster", async () => {
    const native = new FakeNative();
    // One thread is slower here: each decode call takes 10 ms with it, 1 ms with 4 threads.
    const decode = native.decodeBatch.bind(native);
    native.decodeBatch = async () => {
      await new Promise((resolve) => setTimeout(resolve, native.threads.at(-1) === 1 ? 10 : 1));
      return decode();
    };
    const context = fakeContext(native);
    const tuning = tuneNativeBatches(context, { decodeThreads: "auto", batchThreads: 4 });
    const ctx = (context as unknown as { _ctx: FakeNative })._ctx;
    for (let i = 0; i < 18; i++) {
      ctx.initBatch(1);
      ctx.addToBatch(0, i, u32(5), u32(0));
      await ctx.decodeBatch();
    }
    // Prompt batches are not measured: they always get the batch threads.
    ctx.initBatch(100);
    ctx.addToBatch(0, 12, new Uint32Array(100), u32(99));
    await ctx.decodeBatch();
    expect(tuning.stats().threadChoices).toEqual({ 1: 4 });
    // A run of calls with each while measuring, then 4 threads for the rest and for the prompt batch.
    expect(native.threads).toEqual([1, 4]);
  });

  it("on a persistent threadpool, automatic decode threads are the batch threads, with nothing measured", async () => {
    const native = new FakeNative();
    const context = fakeContext(native);
    const tuning = tuneNativeBatches(context, {
      decodeThreads: "auto",
      batchThreads: 4,
      pool: { attach: () => true },
    });
    const ctx = (context as unknown as { _ctx: FakeNative })._ctx;
    for (const size of [1, 3, 8, 100]) {
      ctx.initBatch(size);
      ctx.addToBatch(0, 0, new Uint32Array(size), u32(size - 1));
      await ctx.decodeBatch();
    }
    expect(native.threads).toEqual([4]);
    expect(tuning.stats().threadChoices).toEqual({});
    expect(tuning.stats().decodeCalls).toBe(4);
  });

  it("with a shared gate, two contexts never decode at the same time, and a failed decode does not block the next", async () => {
    let running = 0;
    let most = 0;
    const slowNative = (fail: boolean) => {
      const native = new FakeNative();
      native.decodeBatch = async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
        if (fail) throw new Error("decode failed");
      };
      return native;
    };
    const gate = new DecodeGate();
    const contexts = [fakeContext(slowNative(false)), fakeContext(slowNative(true))];
    for (const context of contexts) tuneNativeBatches(context, { decodeThreads: 1, batchThreads: 1, gate });
    const decodes = contexts.flatMap((context) => {
      const ctx = (context as unknown as { _ctx: FakeNative })._ctx;
      return [0, 1, 2].map(async () => {
        ctx.initBatch(1);
        ctx.addToBatch(0, 0, u32(1), u32(0));
        return ctx.decodeBatch();
      });
    });
    const outcomes = await Promise.allSettled(decodes);
    expect(most).toBe(1);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      "fulfilled",
      "fulfilled",
      "fulfilled",
      "rejected",
      "rejected",
      "rejected",
    ]);
    // Without the gate they overlap.
    most = 0;
    const ungated = [fakeContext(slowNative(false)), fakeContext(slowNative(false))];
    for (const context of ungated) tuneNativeBatches(context, { decodeThreads: 1, batchThreads: 1 });
    await Promise.all(
      ungated.map((context) => {
        const ctx = (context as unknown as { _ctx: FakeNative })._ctx;
        ctx.initBatch(1);
        ctx.addToBatch(0, 0, u32(1), u32(0));
        return ctx.decodeBatch();
      }),
    );
    expect(most).toBe(2);
  });

  it("leaves a context alone when node-llama-cpp's internals are not as expected", () => {
    const native = { initBatch() {}, decodeBatch: async () => {} };
    const tuning = tuneNativeBatches(fakeContext(native), { decodeThreads: 1, batchThreads: 1 });
    expect(tuning.active).toBe(false);
    expect(Object.keys(native)).toEqual(["initBatch", "decodeBatch"]);
    expect(tuneNativeBatches({} as LlamaContext, { decodeThreads: 1, batchThreads: 1 }).active).toBe(false);
  });
});

describe("gatherSequencesStrategy and shareBatch", () => {
  const item = (tokens: number): BatchItem => ({
    tokens: Array.from({ length: tokens }, () => 1 as Token),
    logits: [],
    evaluationPriority: 5,
  });

  it("waits while the queue grows, starts after three quiet looks, and never waits more than 16 looks", () => {
    const strategy = gatherSequencesStrategy();
    const queue = [item(1)];
    expect(strategy({ items: queue, size: 512 })).toEqual([]);
    queue.push(item(1));
    expect(strategy({ items: queue, size: 512 })).toEqual([]); // grew: wait
    expect(strategy({ items: queue, size: 512 })).toEqual([]); // quiet 1
    expect(strategy({ items: queue, size: 512 })).toEqual([]); // quiet 2
    expect(strategy({ items: queue, size: 512 })).toHaveLength(2); // quiet 3: go
    // A queue that keeps growing is still decoded after 16 looks.
    const growing: BatchItem[] = [];
    let looks = 0;
    let result: unknown[] = [];
    while (result.length === 0) {
      growing.push(item(1));
      result = strategy({ items: growing, size: 512 });
      looks++;
    }
    expect(looks).toBe(17);
  });

  it("shares the batch equally, then hands what is left to items in order", () => {
    const items = [item(100), item(2), item(100)];
    expect(shareBatch(items, 64).map((entry) => entry.processAmount)).toEqual([41, 2, 21]);
    expect(shareBatch(items, 512).map((entry) => entry.processAmount)).toEqual([100, 2, 100]);
    // More items than slots: each of the first gets one token, the rest wait for the next batch.
    expect(shareBatch([item(3), item(3), item(3)], 2).map((entry) => entry.processAmount)).toEqual([1, 1]);
  });
});

describe("parallel decoding on llama.cpp", () => {
  let dir: string;
  let modelPath: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "selfalign-native-batch-"));
    modelPath = join(dir, "tiny.gguf");
    await writeTinyModel(modelPath, { seed: 3 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reaches llama.cpp in sequence-id order, with every generating sequence in each decode step", async () => {
    const llama = await getLlama({ gpu: false });
    const model = await llama.loadModel({ modelPath });
    const sequences = 8;
    const context = await model.createContext({
      contextSize: 128,
      sequences,
      threads: 1,
      batching: { itemPrioritizationStrategy: gatherSequencesStrategy() },
    });
    try {
      // Record what reaches the addon, under the tuning.
      const native = (context as unknown as { _ctx: Record<string, unknown> })._ctx;
      const addToBatch = (native.addToBatch as (...args: unknown[]) => Uint32Array).bind(native);
      const decodeBatch = (native.decodeBatch as () => Promise<unknown>).bind(native);
      const steps: number[][] = [];
      let current: number[] = [];
      Object.defineProperty(native, "addToBatch", {
        configurable: true,
        writable: true,
        value: (sequenceId: number, ...rest: unknown[]) => {
          current.push(sequenceId);
          return addToBatch(sequenceId, ...rest);
        },
      });
      Object.defineProperty(native, "decodeBatch", {
        configurable: true,
        writable: true,
        value: () => {
          steps.push(current);
          current = [];
          return decodeBatch();
        },
      });
      expect(tuneNativeBatches(context, { decodeThreads: 1, batchThreads: 1 }).active).toBe(true);
      const newTokens = 20;
      await Promise.all(
        Array.from({ length: sequences }, async (_, i) => {
          const sequence = context.getSequence();
          const prompt = model.tokenize(`Prompt number ${i} says`);
          let count = 0;
          for await (const _token of sequence.evaluate(prompt, { temperature: 0.9, seed: i, yieldEogToken: true }))
            if (++count >= newTokens) break;
        }),
      );
      for (const step of steps) expect(step).toEqual([...step].sort((a, b) => a - b));
      // After the prompts, each step decodes one token of every sequence: (newTokens - 1) steps of 8.
      const fullSteps = steps.filter((step) => step.length === sequences).length;
      expect(fullSteps).toBeGreaterThanOrEqual(newTokens - 2);
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });

  it("parallel greedy outputs equal each prompt's output alone, and steps hold all sequences", async () => {
    const prompts = Array.from({ length: 6 }, (_, i) => `Request ${i}: ${"abcdef".slice(0, i + 1)}`);
    const request = (prompt: string): CompletionRequest => ({ prompt, temperature: 0, maxTokens: 16, allowEos: false });
    const alone = await createLlamaCppBackend({ model: modelPath, contextSize: 128, sequences: 1, threads: 1 });
    const parallel = await createLlamaCppBackend({ model: modelPath, contextSize: 128, sequences: 6, threads: 1 });
    try {
      const expected = [];
      for (const prompt of prompts)
        expected.push((await completeAll(alone, [request(prompt)]))[0]?.completions[0]?.text);
      const before = parallel.decodeStats();
      const results = await completeAll(parallel, prompts.map(request));
      expect(results.map((r) => r.completions[0]?.text)).toEqual(expected);
      const stats = parallel.decodeStats();
      expect(stats.tuned).toBe(true);
      // 15 decode steps after the prompts, each with one token of each of the 6 sequences.
      expect((stats.callsBySize[6] ?? 0) - (before.callsBySize[6] ?? 0)).toBeGreaterThanOrEqual(14);
    } finally {
      await Promise.all([alone.close(), parallel.close()]);
    }
  });
});
