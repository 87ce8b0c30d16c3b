/**
 * Stage 1a end to end on a tiny random-weight GGUF through the embedded llama.cpp backend. A grammar keeps the
 * model's output in the list format (random weights pick the words), so every filter and the ROUGE-L dedup see
 * real traffic. A run stopped after its first round and resumed must end with the records of an uninterrupted run.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRecordsFile as lines, withRun } from "./fixtures/stage-files.js";
import { startTinyEngine, type TinyEngine } from "./fixtures/tiny-engine.js";
import type { LanguageModel } from "../src/backends/language-model.js";
import { createOpenAICompatibleBackend } from "../src/backends/openai-compatible/index.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { AbortedError } from "../src/errors/index.js";
import type { StartServerResult } from "../src/serve/server.js";
import { selfInstructFilterNames } from "../src/stages/self-instruct/filters.js";
import { type RunSelfInstructOptions, runSelfInstruct } from "../src/stages/self-instruct/run.js";

/** Instruction-shaped output: some tasks pass, others trip the blacklist, punctuation, word-count or dedup filters. */
const grammar = `root ::= " " body "\\n6. Input:\\n" inp "\\n###\\n7. Instruction: " body "\\n7. Input:\\n" inp "\\n###\\n8. Instruction: " body "\\n8. Input:\\n" inp "\\n###\\n9. Instruction: " body "\\n9. Input:\\n" inp "\\n###\\n"
body ::= verb " " w " " w " " w " " w "." | "Hi there."
verb ::= "Write" | "Explain" | "Describe" | "Draw" | "(Quote)" | "Summarize"
w ::= "cats" | "dogs" | "rivers" | "tea" | "maps" | "laws"
inp ::= "<noinput>" | "The river is long."`;

let dir: string;
let backend: LanguageModel;
let constitution: Constitution;
let server: StartServerResult;

let engine: TinyEngine;
beforeAll(async () => {
  engine = await startTinyEngine({ prefix: "selfalign-si-", seed: 11, contextLength: 4096 });
  ({ dir, backend, server } = engine);
  constitution = await loadConstitution(defaultConstitutionDir());
});

afterAll(async () => {
  await engine?.close();
});

const runInto = (runDir: string, extra: Partial<RunSelfInstructOptions> = {}) =>
  withRun(runDir, async (run) =>
    runSelfInstruct({
      backend,
      store: await run.stage("self-instruct"),
      constitution,
      target: 1000,
      maxRounds: 4,
      demos: 2,
      batchSize: 2,
      sampling: { grammar, maxTokens: 190 },
      ...extra,
    }),
  );

describe("self-instruct on a tiny GGUF", () => {
  it("keeps, rejects with named filters, and resumes to the same records after an interruption", async () => {
    const whole = join(dir, "whole");
    const result = await runInto(whole);
    expect(result.stopReason).toBe("max-rounds");
    expect(result.counts.rounds).toBe(4);
    const records = await lines(join(whole, "self-instruct", "records.jsonl"));
    const rejected = await lines(join(whole, "self-instruct", "rejected.jsonl"));
    expect(records.length).toBeGreaterThan(0);
    for (const record of records) {
      expect(record).toMatchObject({ source: "self-instruct", output: "", backend: backend.id });
      expect(typeof record.instruction).toBe("string");
      expect(record.maxSimilarity as number).toBeLessThanOrEqual(0.7);
    }
    // Every rejection names its filter and says why.
    expect(rejected.length).toBeGreaterThan(0);
    for (const rejection of rejected) {
      // Every filter but context-overflow: the prompts fit the 4096-token context.
      expect(selfInstructFilterNames.filter((name) => name !== "context-overflow")).toContain(rejection.filter);
      expect(String(rejection.reason).length).toBeGreaterThan(5);
    }
    const manifest = JSON.parse(await readFile(join(whole, "self-instruct", "manifest.json"), "utf8"));
    expect(manifest.counts.kept).toBe(records.length);
    expect(manifest.usage.completionTokens).toBeGreaterThan(0);
    expect(result.usage).toEqual({
      promptTokens: manifest.usage.promptTokens,
      completionTokens: manifest.usage.completionTokens,
    });

    // Stop after the first committed round, then resume.
    const resumed = join(dir, "resumed");
    const controller = new AbortController();
    await expect(
      runInto(resumed, {
        signal: controller.signal,
        onProgress: (event) => {
          if (event.type === "record-end") controller.abort();
        },
      }),
    ).rejects.toBeInstanceOf(AbortedError);
    const partial = await lines(join(resumed, "self-instruct", "records.jsonl"));
    const partialRejected = await lines(join(resumed, "self-instruct", "rejected.jsonl"));
    expect(partial.length + partialRejected.length).toBeLessThan(records.length + rejected.length);
    await runInto(resumed);
    expect(await lines(join(resumed, "self-instruct", "records.jsonl"))).toEqual(records);
    expect(await lines(join(resumed, "self-instruct", "rejected.jsonl"))).toEqual(rejected);
  });

  it("stops after rounds that keep nothing", async () => {
    const result = await runInto(join(dir, "idle"), {
      maxRounds: 50,
      maxRoundsWithoutProgress: 2,
      sampling: { grammar: 'root ::= " Hi there.\\n6. Input:\\n<noinput>\\n###\\n"', maxTokens: 40 },
    });
    expect(result.stopReason).toBe("no-progress");
    expect(result.counts.kept).toBe(0);
    expect(result.counts.rounds).toBe(2);
  });

  it("runs through selfalign serve and the HTTP backend", async () => {
    const http = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "tiny", maxContext: 4096 });
    try {
      const result = await runInto(join(dir, "http"), { backend: http, maxRounds: 2 });
      expect(result.counts.rounds).toBe(2);
      const records = await lines(join(dir, "http", "self-instruct", "records.jsonl"));
      const rejected = await lines(join(dir, "http", "self-instruct", "rejected.jsonl"));
      expect(records.length + rejected.length).toBeGreaterThan(0);
      for (const record of records) expect(record.backend).toBe(http.id);
      for (const rejection of rejected) expect(String(rejection.reason).length).toBeGreaterThan(5);
    } finally {
      await http.close();
    }
  });
});
