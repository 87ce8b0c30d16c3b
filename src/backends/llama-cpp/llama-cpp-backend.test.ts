import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AbortedError, BackendError, ConfigError } from "../../errors/index.js";
import { BYTE_VOCAB_EOS, writeTinyModel } from "../../gguf/index.js";
import { type CompletionRequest, completeAll, type TextProgress } from "../language-model.js";
import { chatWrapperFor, renderChat } from "./chat-prompt.js";
import { settledText } from "./generate.js";
import { createLlamaCppBackend, type LlamaCppBackend } from "./index.js";

let dir: string;
let modelPath: string;
let backend: LlamaCppBackend;

/** Ban the 256 byte-fallback tokens so a random model writes printable ASCII (and tests can read its text). */
const asciiOnly: Record<number, number> = {};
for (let token = 3; token < 259; token++) asciiOnly[token] = -100;

const greedy = (prompt: string, extra: Partial<CompletionRequest> = {}): CompletionRequest => ({
  prompt,
  temperature: 0,
  maxTokens: 24,
  logitBias: asciiOnly,
  // A random model ends early on its own; most tests want full-length outputs.
  allowEos: false,
  ...extra,
});

async function one(request: CompletionRequest) {
  const [result] = await completeAll(backend, [request]);
  if (!result) throw new Error("no result");
  return result;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-llama-cpp-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, { seed: 7 });
  backend = await createLlamaCppBackend({
    model: modelPath,
    contextSize: 1024,
    sequences: 4,
    threads: 1,
    batchThreads: 1,
  });
});

afterAll(async () => {
  await backend?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("LlamaCppBackend basics", () => {
  it("reports capabilities and tokenizes round trip", async () => {
    expect(backend.capabilities()).toMatchObject({
      score: true,
      grammar: true,
      chat: true,
      ngramPenalty: true,
      maxContext: 1024,
      parallel: 4,
    });
    const text = "Hello, world! 123";
    const tokens = await backend.tokenize(text);
    expect(await backend.detokenize(tokens)).toBe(text);
    expect(await backend.countTokens(text)).toBe(tokens.length);
    expect(await backend.tokenize(text, { addBos: true })).toEqual([1, ...tokens]);
    expect(backend.id).toContain(modelPath);
  });

  it("greedy generation is deterministic, across calls and across sequences", async () => {
    const request = greedy("Once upon a time");
    const results = await completeAll(backend, [request, request, request]);
    const again = await one(request);
    const texts = [...results, again].map((r) => r.completions[0]?.text);
    expect(texts[0]?.length).toBeGreaterThan(0);
    expect(new Set(texts).size).toBe(1);
  });

  it("same seed gives the same sample; different seeds differ; n samples differ", async () => {
    const sample = (seed: number) =>
      one({ prompt: "Sample me", temperature: 1, maxTokens: 24, seed, logitBias: asciiOnly });
    const a = (await sample(11)).completions[0]?.text;
    const b = (await sample(11)).completions[0]?.text;
    const c = (await sample(12)).completions[0]?.text;
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    const many = await one({ prompt: "Sample me", temperature: 1, maxTokens: 24, seed: 5, n: 3, logitBias: asciiOnly });
    expect(many.completions).toHaveLength(3);
    expect(new Set(many.completions.map((x) => x.text)).size).toBe(3);
    const manyAgain = await one({
      prompt: "Sample me",
      temperature: 1,
      maxTokens: 24,
      seed: 5,
      n: 3,
      logitBias: asciiOnly,
    });
    expect(manyAgain.completions.map((x) => x.text)).toEqual(many.completions.map((x) => x.text));
  });

  it("maxTokens ends with finishReason length", async () => {
    const result = await one(greedy("Count", { maxTokens: 7 }));
    expect(result.completions[0]).toMatchObject({ finishReason: "length", tokenCount: 7 });
    expect(result.usage.completionTokens).toBe(7);
    expect(result.usage.promptTokens).toBe((await backend.tokenize("Count", { addBos: true })).length);
  });

  it("stop strings cut the text before the first stop string", async () => {
    const full = (await one(greedy("A story", { maxTokens: 40 }))).completions[0]?.text ?? "";
    expect(full.length).toBeGreaterThan(12);
    const stop = full.slice(8, 10);
    const expected = full.slice(0, full.indexOf(stop));
    const cut = await one(greedy("A story", { maxTokens: 40, stop: ["\u0000never", stop] }));
    expect(cut.completions[0]?.text).toBe(expected);
    expect(cut.completions[0]?.finishReason).toBe("stop");
    expect(cut.completions[0]?.tokenCount).toBeLessThan(40);
  });

  it("reports text as it is generated: growing prefixes of the final text that never reach into a stop string", async () => {
    const full = (await one(greedy("A story", { maxTokens: 40 }))).completions[0]?.text ?? "";
    const stop = full.slice(14, 17);
    const updates: TextProgress[] = [];
    const [cut, other] = await completeAll(
      backend,
      [greedy("A story", { maxTokens: 40, stop: [stop] }), greedy("Other", { maxTokens: 10, n: 2 })],
      { onText: (progress) => updates.push(progress) },
    );
    const final = cut?.completions[0]?.text ?? "";
    expect(final).toBe(full.slice(0, full.indexOf(stop)));
    const mine = updates.filter((u) => u.index === 0).map((u) => u.text);
    expect(mine.length).toBeGreaterThan(final.length / 3);
    mine.forEach((text, i) => {
      expect(final.startsWith(text)).toBe(true);
      if (i > 0) expect(text.length).toBeGreaterThan(mine[i - 1]?.length ?? 0);
    });
    for (const sample of [0, 1]) {
      const texts = updates.filter((u) => u.index === 1 && u.sample === sample).map((u) => u.text);
      expect(texts.at(-1)).toBe(other?.completions[sample]?.text);
    }
  });

  it("settledText holds back unfinished characters and possible stop-string starts", () => {
    expect(settledText("abc", 0)).toBe("abc");
    expect(settledText("abc\ufffd\ufffd", 0)).toBe("abc");
    expect(settledText("abcdef", 3)).toBe("abcd");
    expect(settledText("ab", 5)).toBe("");
    // "c" plus the unfinished character could be the stop string "cé": "c" is held back too.
    expect(settledText("abc\ufffd", 2)).toBe("ab");
  });

  it("logit bias steers and bans tokens", async () => {
    // tokenize("x") is ["▁", "x"]: SentencePiece adds a space prefix.
    const x = (await backend.tokenize("x")).at(-1) as number;
    const forced = await one(greedy("Anything", { maxTokens: 5, logitBias: { [x]: 100 } }));
    expect(forced.completions[0]?.text).toBe("xxxxx");
    await expect(one(greedy("x", { logitBias: { 354: 5 } }))).rejects.toThrow(/outside this model's vocabulary/);
    const ascii = await one({ prompt: "Bytes?", temperature: 1, seed: 3, maxTokens: 30, logitBias: asciiOnly });
    expect(ascii.completions[0]?.text).toMatch(/^[\x20-\x7e]*$/);
  });

  it("allowEos=false bans end-of-sequence", async () => {
    const eager = await one(greedy("End now", { logitBias: { [BYTE_VOCAB_EOS]: 100 }, allowEos: true }));
    expect(eager.completions[0]).toMatchObject({ text: "", finishReason: "stop", tokenCount: 0 });
    const endless = await one(
      greedy("End now", { maxTokens: 6, logitBias: { [BYTE_VOCAB_EOS]: 100 }, allowEos: false }),
    );
    expect(endless.completions[0]).toMatchObject({ finishReason: "length", tokenCount: 6 });
  });

  it("GBNF grammar constrains the output", async () => {
    const grammar = 'root ::= " (" ("A" | "B" | "C") ") because " [a-z]{3,8} "."';
    const results = await completeAll(
      backend,
      [1, 2, 3].map((seed) => ({ prompt: "Answer:", grammar, temperature: 1, seed, maxTokens: 40 })),
    );
    for (const result of results) {
      expect(result.completions[0]?.text).toMatch(/^ \([ABC]\) because [a-z]{3,8}\.$/);
      expect(result.completions[0]?.finishReason).toBe("stop");
    }
    await expect(one({ prompt: "x", grammar: "root ::= (" })).rejects.toBeInstanceOf(ConfigError);
  });

  it("n-gram penalties change the output; a strong unigram penalty forbids repeats", async () => {
    const plain = (await one(greedy("Repeat after me", { maxTokens: 30 }))).completions[0]?.text ?? "";
    const unigram =
      (await one(greedy("Repeat after me", { maxTokens: 30, ngramPenalties: [{ n: 1, penalty: 1000 }] })))
        .completions[0]?.text ?? "";
    expect(unigram).not.toBe(plain);
    expect(new Set(unigram).size).toBe(unigram.length);
    expect(new Set(plain).size).toBeLessThan(plain.length);
    const bigram =
      (await one(greedy("Repeat after me", { maxTokens: 30, ngramPenalties: [{ n: 2, penalty: 50 }] }))).completions[0]
        ?.text ?? "";
    expect(bigram).not.toBe(plain);
    // Every character pair occurs at most once when repeated bigrams are penalised this hard.
    const pairs = Array.from({ length: bigram.length - 1 }, (_, i) => bigram.slice(i, i + 2));
    expect(new Set(pairs).size).toBe(pairs.length);
  });

  for (const sharePrefix of [true, false])
    it(`reuses the KV cache of a shared prefix (sharePrefix ${sharePrefix})`, async () => {
      const fresh = await createLlamaCppBackend({
        model: modelPath,
        contextSize: 1024,
        sequences: 4,
        threads: 1,
        batchThreads: 1,
        sharePrefix,
      });
      try {
        const prefix = "Principles: 1 be ethical; 2 be informative; 3 be helpful. ".repeat(6);
        const prefixTokens = (await fresh.tokenize(prefix, { addBos: true })).length;
        const suffixes = Array.from({ length: 12 }, (_, i) => `Question ${i}: what is ${i * 7}?`);
        const requests = suffixes.map((suffix) => greedy(prefix + suffix, { maxTokens: 4 }));
        const results = await completeAll(fresh, requests);
        const evaluated = results.reduce((sum, r) => sum + (r.usage.evaluatedPromptTokens ?? 0), 0);
        const promptTotal = results.reduce((sum, r) => sum + r.usage.promptTokens, 0);
        const suffixTotal = promptTotal - prefixTokens * suffixes.length;
        // Copying the prefix between sequences: evaluated once in all; otherwise once per sequence.
        const copies = sharePrefix ? 1 : 4;
        expect(evaluated).toBeLessThanOrEqual(1.1 * (prefixTokens * copies + suffixTotal));
        expect(evaluated).toBeGreaterThanOrEqual(prefixTokens * copies);
        // The reused cache gives the same greedy text as a cold evaluation of the same prompt.
        const cold = await one(requests[11] as CompletionRequest);
        expect(results[11]?.completions[0]?.text).toBe(cold.completions[0]?.text);
        expect(results.map((r) => r.completions[0]?.text)).not.toContain(undefined);
      } finally {
        await fresh.close();
      }
    });

  it("yields every result with its index", async () => {
    const requests = Array.from({ length: 9 }, (_, i) => greedy(`Item ${i}`, { maxTokens: 3 + (i % 4) }));
    const indexes: number[] = [];
    for await (const result of backend.complete(requests)) {
      indexes.push(result.index);
      expect(result.completions[0]?.tokenCount).toBe(3 + (result.index % 4));
    }
    expect(indexes.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("abort stops promptly with AbortedError and leaves the backend usable", async () => {
    const controller = new AbortController();
    const requests = Array.from({ length: 12 }, (_, i) => greedy(`Long ${i}`, { maxTokens: 500 }));
    const seen: number[] = [];
    const run = async () => {
      for await (const result of backend.complete(requests, { signal: controller.signal })) seen.push(result.index);
    };
    setTimeout(() => controller.abort(), 30);
    await expect(run()).rejects.toBeInstanceOf(AbortedError);
    expect(seen.length).toBeLessThan(12);
    const after = await one(greedy("Still alive", { maxTokens: 3 }));
    expect(after.completions[0]?.tokenCount).toBe(3);
  });

  it("chat answers as the assistant", async () => {
    const result = await backend.chat([{ role: "user", content: "Hi there" }], {
      maxTokens: 8,
      temperature: 0,
      logitBias: asciiOnly,
    });
    expect(result.message.role).toBe("assistant");
    expect(result.usage.completionTokens).toBeGreaterThan(0);
    expect(result.usage.promptTokens).toBeGreaterThan((await backend.tokenize("Hi there")).length);
  });

  it("renders chat in a plain format for models without a chat template", () => {
    const messages = [
      { role: "system" as const, content: "Be kind." },
      { role: "user" as const, content: "Hi" },
    ];
    const { tokens, stops } = renderChat(backend.model, chatWrapperFor(backend.model), messages);
    expect(tokens[0]).toBe(1);
    expect(backend.model.detokenize(tokens.slice(1), false)).toBe("Be kind.\n\n### Human\nHi\n\n### Assistant\n");
    expect(stops).toContain("\n\n### Human");
  });

  it("rejects a prompt longer than the context", async () => {
    await expect(one(greedy("x".repeat(1100)))).rejects.toThrow(/tokens but each sequence holds 1024/);
  });
});

describe("model sources", () => {
  it("a missing local file is a ConfigError naming the path", async () => {
    const missing = join(dir, "nope.gguf");
    const error = await createLlamaCppBackend({ model: missing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(missing);
    expect((error as ConfigError).path).toBe(missing);
  });

  it("an hf: URI that cannot be downloaded fails fast with how to supply a local file", async () => {
    const cacheDir = join(dir, "cache");
    const error = await createLlamaCppBackend({
      model: "hf:selfalign-test/does-not-exist-GGUF/model.Q4_K_M.gguf",
      cacheDir,
      downloadStallTimeoutMs: 4000,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    const message = (error as BackendError).message;
    expect(message).toContain("could not download model");
    expect(message).toContain("--model ./path/model.gguf");
    expect(message).toContain(join(cacheDir, "hf_selfalign-test_does-not-exist-GGUF_model.Q4_K_M.gguf"));
    expect(message).not.toMatch(/\n\s+at /);
  });

  it("an hf: URI placed where the offline error says loads without the network", async () => {
    const cacheDir = join(dir, "cache-hit");
    const model = "hf:selfalign-test/tiny-GGUF/tiny.gguf";
    const error = await createLlamaCppBackend({ model, cacheDir, sequences: 1 }).catch((e: unknown) => e);
    const place = /place it as (\/.+\.gguf)\.$/.exec((error as Error).message)?.[1];
    expect(place?.startsWith(cacheDir)).toBe(true);
    await mkdir(cacheDir, { recursive: true });
    await copyFile(modelPath, place as string);
    const cachedBackend = await createLlamaCppBackend({ model, cacheDir, sequences: 1 });
    try {
      expect(cachedBackend.id).toBe(`llama-cpp:${model}`);
      expect(await cachedBackend.countTokens("abc")).toBe(4);
    } finally {
      await cachedBackend.close();
    }
  });
});
