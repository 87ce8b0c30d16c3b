import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BYTE_VOCAB_SIZE, buildTinyModel, gguf, seededNormal, writeGguf } from "../../gguf/index.js";
import { AbortedError } from "../../errors/index.js";
import { completeAll, type ScoreResult } from "../language-model.js";
import { createLlamaCppBackend, type LlamaCppBackend } from "./index.js";
import { alignContinuation } from "./scorer.js";

let dir: string;
let modelPath: string;
let backend: LlamaCppBackend;
const modelOptions = { seed: 3, layers: 2, dim: 64, heads: 4, kvHeads: 2, ffn: 128, dtype: "F32" as const };

/**
 * Independent reference: evaluate the tokens one call at a time on a fresh F32 context, read the FULL vocabulary
 * logits after each token and compute log-softmax here.
 */
const references = new Map<string, Promise<LlamaContextSequence>>();

function referenceSequence(path: string): Promise<LlamaContextSequence> {
  let sequence = references.get(path);
  if (!sequence) {
    sequence = (async () => {
      const llama = await getLlama({ gpu: false, build: "never" });
      const model: LlamaModel = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
      const context = await model.createContext({
        contextSize: 512,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        threads: 1,
      });
      return context.getSequence();
    })();
    references.set(path, sequence);
  }
  return sequence;
}

async function referenceLogprobs(
  path: string,
  tokens: Token[],
): Promise<{ logprobs: number[]; argmax: number[]; full: Array<Map<number, number>> }> {
  const sequence = await referenceSequence(path);
  await sequence.clearHistory();
  const logprobs: number[] = [];
  const argmax: number[] = [];
  /** Per position, every token's log-probability. */
  const full: Array<Map<number, number>> = [];
  for (let i = 0; i < tokens.length - 1; i++) {
    const [result] = await sequence.controlledEvaluate([[tokens[i] as Token, { generateNext: { logits: true } }]]);
    const logits = result?.next?.logits;
    if (!logits || logits.size !== BYTE_VOCAB_SIZE) throw new Error("expected the full vocabulary's logits");
    let max = Number.NEGATIVE_INFINITY;
    let best = -1;
    for (const [token, value] of logits)
      if (value > max) {
        max = value;
        best = token;
      }
    let sum = 0;
    for (const value of logits.values()) sum += Math.exp(value - max);
    logprobs.push((logits.get(tokens[i + 1] as Token) ?? Number.NaN) - max - Math.log(sum));
    argmax.push(best);
    full.push(new Map([...logits].map(([token, value]) => [token, value - max - Math.log(sum)])));
  }
  return { logprobs, argmax, full };
}

async function expectMatchesReference(scorer: LlamaCppBackend, path: string, prompt: string, continuations: string[]) {
  const results = await scorer.score(prompt, continuations);
  expect(results).toHaveLength(continuations.length);
  for (const [i, continuation] of continuations.entries()) {
    const { condition, continuation: target } = alignContinuation(scorer.model, prompt, continuation);
    const whole = [...condition, ...target];
    const { logprobs, argmax } = await referenceLogprobs(path, whole);
    const expected = logprobs.slice(condition.length - 1);
    const result = results[i];
    expect(result?.tokens.map((t) => t.token)).toEqual(target);
    expect(result?.tokens).toHaveLength(expected.length);
    for (const [j, t] of (result?.tokens ?? []).entries())
      expect(Math.abs(t.logprob - (expected[j] as number))).toBeLessThan(1e-4);
    expect(Math.abs((result?.logprob ?? 0) - expected.reduce((a, b) => a + b, 0))).toBeLessThan(1e-4);
    const greedy = target.every((token, j) => argmax[condition.length - 1 + j] === token);
    expect(result?.isGreedy).toBe(greedy);
  }
  return results;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-score-"));
  modelPath = join(dir, "tiny.gguf");
  const { metadata, tensors } = buildTinyModel(modelOptions);
  await writeGguf(modelPath, { metadata, tensors });
  backend = await createLlamaCppBackend({
    model: modelPath,
    contextSize: 512,
    sequences: 1,
    threads: 1,
    batchThreads: 1,
  });
});

afterAll(async () => {
  for (const sequence of references.values()) await (await sequence).model.dispose();
  await backend?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("score", () => {
  it("equals a token-by-token full-vocabulary computation, across the prompt/continuation boundary", async () => {
    await expectMatchesReference(backend, modelPath, "Question: Is the sky blue? Answer:", [
      " yes",
      " no",
      " It is blue.",
      "!",
    ]);
  });

  it("conditions on BOS alone for an empty prompt", async () => {
    const [result] = await expectMatchesReference(backend, modelPath, "", ["Hello world"]);
    expect(result?.tokens[0]?.token).toBe((await backend.tokenize("Hello world"))[0]);
  });

  it("isGreedy matches the arg-max over the whole vocabulary", async () => {
    const printable = Array.from({ length: 94 }, (_, i) => String.fromCharCode(0x21 + i));
    const results = await backend.score("Q:", printable);
    const { argmax } = await referenceLogprobs(modelPath, [
      ...alignContinuation(backend.model, "Q:", "a").condition,
      0 as Token,
    ]);
    const best = argmax.at(-1);
    for (const result of results) {
      expect(result.tokens).toHaveLength(1);
      expect(result.isGreedy).toBe(result.tokens[0]?.token === best);
    }
    // Probabilities of single tokens sum to at most 1.
    const mass = results.reduce((sum, r) => sum + Math.exp(r.logprob), 0);
    expect(mass).toBeLessThanOrEqual(1 + 1e-6);
  });

  it("topLogprobs gives the k most likely tokens at each position, as the full vocabulary ranks them", async () => {
    const prompt = "Question: what comes next?";
    const continuation = " A random reply";
    const [result] = await backend.score(prompt, [continuation], { topLogprobs: 4 });
    const { condition, continuation: target } = alignContinuation(backend.model, prompt, continuation);
    const { full } = await referenceLogprobs(modelPath, [...condition, ...target]);
    expect(result?.tokens).toHaveLength(target.length);
    for (const [j, token] of (result?.tokens ?? []).entries()) {
      const ranked = [...(full[condition.length - 1 + j] ?? [])].sort((a, b) => b[1] - a[1]).slice(0, 4);
      expect(token.top?.map((t) => t.token)).toEqual(ranked.map(([id]) => id));
      for (const [k, alternative] of (token.top ?? []).entries()) {
        expect(Math.abs(alternative.logprob - (ranked[k]?.[1] ?? 0))).toBeLessThan(1e-4);
        expect(alternative.text).toBe(await backend.detokenize([alternative.token]));
      }
    }
    // Without the option, no alternatives.
    const [plain] = await backend.score(prompt, [continuation]);
    expect(plain?.tokens.every((t) => t.top === undefined)).toBe(true);
  });

  it("gives the same results with a cached prefix, in any order, and an empty continuation scores 0", async () => {
    const prompt = "The following is a long shared prompt. ".repeat(5);
    // One sequence decodes continuation by continuation: bit-identical whatever the order. Batched decoding
    // (the default) groups tokens differently per call, which moves results at float-rounding level only.
    const sequential = await createLlamaCppBackend({
      model: modelPath,
      contextSize: 512,
      sequences: 1,
      threads: 1,
      scoreSequences: 1,
    });
    try {
      for (const [scorer, tolerance] of [
        [sequential, 1e-9],
        [backend, 1e-5],
      ] as const) {
        const a = await scorer.score(prompt, [" first", " second"]);
        const b = await scorer.score(prompt, [" second", "", " first"]);
        expect(Math.abs((a[0]?.logprob ?? 0) - (b[2]?.logprob ?? 1))).toBeLessThan(tolerance);
        expect(Math.abs((a[1]?.logprob ?? 0) - (b[0]?.logprob ?? 1))).toBeLessThan(tolerance);
        expect(b[1]).toEqual({ logprob: 0, tokens: [], isGreedy: true });
      }
    } finally {
      await sequential.close();
    }
  });

  it("scores concurrent calls together: prompts differing at the end, and echo-style calls, as one at a time would, in far fewer decode calls", async () => {
    const shared = "You are judging two answers by the principles below. Be fair and brief. ".repeat(4);
    const prompts = ["A", "B", "C", "D"].map((label) => `${shared}Question ${label}: which answer is better? Verdict:`);
    const continuations = [" (a)", " (b)", " neither", " both of them"];
    const echoed = prompts.slice(0, 2).map((prompt) => `${prompt} (a)`);
    const make = (scoreSequences: number) =>
      createLlamaCppBackend({
        model: modelPath,
        contextSize: 512,
        sequences: 1,
        threads: 1,
        batchThreads: 1,
        scoreSequences,
      });
    const [one, eight] = await Promise.all([make(1), make(8)]);
    try {
      const run = (scorer: LlamaCppBackend) =>
        Promise.all([
          ...prompts.map((prompt) => scorer.score(prompt, continuations)),
          ...echoed.map((text) => scorer.score("", [text], { topLogprobs: 2 })),
        ]);
      const expected: ScoreResult[][] = [];
      for (const prompt of prompts) expected.push(await one.score(prompt, continuations));
      for (const text of echoed) expected.push(await one.score("", [text], { topLogprobs: 2 }));
      const sequentialCalls = (await one.scoreDecodeStats()).decodeCalls;
      const together = await run(eight);
      const batchedCalls = (await eight.scoreDecodeStats()).decodeCalls;
      expect(together).toHaveLength(expected.length);
      together.forEach((results, call) => {
        results.forEach((result, i) => {
          const reference = expected[call]?.[i];
          expect(result.tokens.map((t) => t.token)).toEqual(reference?.tokens.map((t) => t.token));
          expect(Math.abs(result.logprob - (reference?.logprob ?? Number.NaN))).toBeLessThan(1e-5);
          result.tokens.forEach((token, j) => {
            expect(Math.abs(token.logprob - (reference?.tokens[j]?.logprob ?? Number.NaN))).toBeLessThan(1e-5);
            expect(token.top?.map((t) => t.token)).toEqual(reference?.tokens[j]?.top?.map((t) => t.token));
          });
          expect(result.isGreedy).toBe(reference?.isGreedy);
        });
      });
      // The reference itself against the full-vocabulary computation, for one call of each kind.
      await expectMatchesReference(eight, modelPath, prompts[0] as string, continuations);
      // 16 continuations and 2 echoed texts: one at a time needs a decode call each; together, a few waves.
      expect(sequentialCalls).toBeGreaterThanOrEqual(18);
      expect(batchedCalls).toBeLessThanOrEqual(8);
    } finally {
      await Promise.all([one.close(), eight.close()]);
    }
  });

  it("evaluates each distinct prefix once: option letters share one evaluation, judge prompts share their heads", async () => {
    // Judge-shaped calls: two heads (the orders), three tails (the principles), two one-token letters each.
    const heads = ["Order one: first text, then second text. ", "Order two: second text, then first text. "].map(
      (order) => `A long shared system block that every judge prompt starts with. ${order}`.repeat(2),
    );
    const tails = ["Judge by honesty.", "Judge by brevity, and by nothing else.", "Judge by care."].map(
      (tail) => `${tail} The better output is Output (`,
    );
    const prompts = heads.flatMap((head) => tails.map((tail) => head + tail));
    const letters = ["a", "b"];
    for (const prompt of prompts)
      for (const letter of letters)
        expect(alignContinuation(backend.model, prompt, letter).continuation).toHaveLength(1);
    // The least any scorer must evaluate: the distinct token prefixes of the prompts (a trie's nodes).
    const trie = new Set<string>();
    for (const prompt of prompts) {
      const tokens = await backend.tokenize(prompt, { addBos: true });
      for (let i = 1; i <= tokens.length; i++) trie.add(tokens.slice(0, i).join(","));
    }
    for (const scoreSequences of [1, 4]) {
      const scorer = await createLlamaCppBackend({
        model: modelPath,
        contextSize: 512,
        sequences: 1,
        threads: 1,
        batchThreads: 1,
        scoreSequences,
      });
      try {
        const together = await Promise.all(prompts.map((prompt) => scorer.score(prompt, letters)));
        expect((await scorer.scoreDecodeStats()).decodedTokens).toBe(trie.size);
        for (const [i, prompt] of prompts.entries()) {
          const alone = await expectMatchesReference(scorer, modelPath, prompt, letters);
          for (const [j, result] of (together[i] ?? []).entries())
            expect(Math.abs(result.logprob - (alone[j]?.logprob ?? Number.NaN))).toBeLessThan(1e-5);
        }
      } finally {
        await scorer.close();
      }
    }
  });

  it("rejects a call that is aborted while it waits, and scores the others", async () => {
    const controller = new AbortController();
    const prompt = "Abort test prompt:";
    const kept = backend.score(prompt, [" kept"]);
    const aborted = backend.score(prompt, [" gone"], { signal: controller.signal });
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AbortedError);
    const [result] = await kept;
    expect(result?.tokens.length).toBeGreaterThan(0);
  });

  it("aligns tokens like lm-evaluation-harness: continuation = tokens(prompt+cont) after tokens(prompt)", async () => {
    const { condition, continuation } = alignContinuation(backend.model, "Q: 2+2=", " 4");
    expect(condition).toEqual(await backend.tokenize("Q: 2+2=", { addBos: true }));
    expect([...condition, ...continuation]).toEqual(await backend.tokenize("Q: 2+2= 4", { addBos: true }));
  });
});

describe("LoRA adapters", () => {
  const rank = 2;
  const alpha = 4;
  const targets = [
    { name: "blk.0.attn_q.weight", nIn: 64, nOut: 64 },
    { name: "blk.1.ffn_down.weight", nIn: 128, nOut: 64 },
    { name: "output.weight", nIn: 64, nOut: 354 },
  ];
  let adapterPath: string;
  let mergedPath: string;

  beforeAll(async () => {
    const normal = seededNormal(99);
    const factors = targets.map(({ nIn, nOut }) => ({
      a: Float32Array.from({ length: rank * nIn }, () => normal() * 0.3),
      b: Float32Array.from({ length: nOut * rank }, () => normal() * 0.3),
    }));
    adapterPath = join(dir, "adapter.gguf");
    await writeGguf(adapterPath, {
      metadata: {
        "general.type": gguf.string("adapter"),
        "general.architecture": gguf.string("llama"),
        "adapter.type": gguf.string("lora"),
        "adapter.lora.alpha": gguf.f32(alpha),
      },
      tensors: targets.flatMap(({ name, nIn, nOut }, i) => [
        { name: `${name}.lora_a`, dims: [nIn, rank], data: factors[i]?.a as Float32Array },
        { name: `${name}.lora_b`, dims: [rank, nOut], data: factors[i]?.b as Float32Array },
      ]),
    });
    // Independent computation: merge W' = W + (alpha / r) * B A into the base weights.
    const { metadata, tensors } = buildTinyModel(modelOptions);
    targets.forEach(({ name, nIn, nOut }, i) => {
      const tensor = tensors.find((t) => t.name === name);
      if (!tensor) throw new Error(`no tensor ${name}`);
      const { a, b } = factors[i] as { a: Float32Array; b: Float32Array };
      for (let out = 0; out < nOut; out++)
        for (let input = 0; input < nIn; input++) {
          let delta = 0;
          for (let k = 0; k < rank; k++) delta += (b[out * rank + k] as number) * (a[k * nIn + input] as number);
          tensor.data[out * nIn + input] = (tensor.data[out * nIn + input] as number) + (alpha / rank) * delta;
        }
    });
    mergedPath = join(dir, "merged.gguf");
    await writeGguf(mergedPath, { metadata, tensors });
  });

  it("changes scores as the merged weights do; scale 0 equals the base", async () => {
    const prompt = "Adapters change";
    const continuations = [" the model", " nothing"];
    const make = (lora?: Array<{ path: string; scale?: number }>, model = modelPath) =>
      createLlamaCppBackend({ model, lora, contextSize: 256, sequences: 1, threads: 1, batchThreads: 1 });
    const [withLora, zero, merged] = await Promise.all([
      make([{ path: adapterPath }]),
      make([{ path: adapterPath, scale: 0 }]),
      make(undefined, mergedPath),
    ]);
    try {
      const base = await backend.score(prompt, continuations);
      const adapted = await withLora.score(prompt, continuations);
      const reference = await merged.score(prompt, continuations);
      const none = await zero.score(prompt, continuations);
      continuations.forEach((_, i) => {
        expect(Math.abs((adapted[i]?.logprob ?? 0) - (base[i]?.logprob ?? 0))).toBeGreaterThan(0.01);
        expect(Math.abs((adapted[i]?.logprob ?? 0) - (reference[i]?.logprob ?? 1))).toBeLessThan(1e-3);
        expect(Math.abs((none[i]?.logprob ?? 0) - (base[i]?.logprob ?? 1))).toBeLessThan(1e-5);
      });
      expect(withLora.id).toContain("+lora:");
      // Generation uses the adapter too: greedy text follows the merged model, not the base.
      const texts = await Promise.all(
        [withLora, merged, backend].map(async (b) => {
          const [result] = await completeAll(b, [
            { prompt: "Adapters change", maxTokens: 16, temperature: 0, allowEos: false },
          ]);
          return result?.completions[0]?.text;
        }),
      );
      expect(texts[0]).toBe(texts[1]);
      expect(texts[0]).not.toBe(texts[2]);
    } finally {
      await Promise.all([withLora.close(), zero.close(), merged.close()]);
    }
  });
});
