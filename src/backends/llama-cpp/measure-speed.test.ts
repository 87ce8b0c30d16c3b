import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../gguf/index.js";
import { measureTrainingSpeed } from "../../training/embedded/measure-training-speed.js";
import { createLlamaCppBackend, type LlamaCppBackend } from "./index.js";
import { measureEngineSpeed, textOfTokens } from "./measure-speed.js";

let dir: string;
let modelPath: string;
let backend: LlamaCppBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-measure-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, { layers: 2, dim: 64, heads: 4, kvHeads: 2, ffn: 128, seed: 2 });
  backend = await createLlamaCppBackend({
    model: modelPath,
    contextSize: 512,
    sequences: 2,
    threads: 1,
    batchThreads: 1,
  });
});

afterAll(async () => {
  await backend?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("measureEngineSpeed", () => {
  it("times prompt evaluation, parallel decoding and scoring, each from work actually done", async () => {
    const before = backend.decodeStats().decodedTokens;
    const speed = await measureEngineSpeed(backend, { promptTokens: 128, decodeTokens: 16 });
    expect(speed.decodeSequences).toBe(2);
    for (const rate of [speed.promptTokensPerSecond, speed.decodeTokensPerSecond, speed.scoreTokensPerSecond])
      expect(rate).toBeGreaterThan(0);
    // A prompt is evaluated in one batch, a token per decode step: per token, prompts are faster.
    expect(speed.promptTokensPerSecond).toBeGreaterThan(speed.decodeTokensPerSecond);
    // The prompt (128+), 2 x 16 generated tokens and the warm-up went through the engine; nothing came from a cache.
    expect(backend.decodeStats().decodedTokens - before).toBeGreaterThanOrEqual(128 + 32);
    expect(speed.seconds).toBeGreaterThan(0);
  });
});

describe("textOfTokens", () => {
  it("lands within one word of the asked length, with the byte vocabulary's long words too", async () => {
    const words = ["assistant", "principle", "instruction", "a"];
    for (const tokens of [40, 300, 1860]) {
      const text = await textOfTokens(backend, "Opening.", tokens, words);
      const count = await backend.countTokens(text);
      // The longest word is 11 bytes: never more than one word (plus its space) past the length asked for.
      expect(count).toBeGreaterThanOrEqual(tokens);
      expect(count).toBeLessThanOrEqual(tokens + 12);
    }
  });
});

describe("measureTrainingSpeed", () => {
  it("trains a few LoRA steps and reports the tokens of the timed steps per second", async () => {
    const speed = await measureTrainingSpeed({
      base: modelPath,
      sequenceTokens: 64,
      examplesPerStep: 2,
      steps: 2,
      kernel: "ts",
    });
    // 2 timed steps x 2 examples of ~64 tokens (BOS and the leading space added).
    expect(speed.tokens).toBeGreaterThanOrEqual(2 * 2 * 60);
    expect(speed.tokens).toBeLessThanOrEqual(2 * 2 * 72);
    expect(speed.tokensPerSecond).toBeGreaterThan(0);
    expect(speed.seconds).toBeGreaterThanOrEqual(speed.firstStepSeconds);
  });
});
