/**
 * Stage 2 end to end on a tiny random-weight GGUF, through the embedded backend and through `selfalign serve` +
 * the HTTP backend. A grammar makes the random model write thoughts-then-answer text, so the filters see kept,
 * short, truncated and malformed answers; an over-long query is rejected as context-overflow, never truncated.
 * A run stopped after its first record and resumed ends with the records of an uninterrupted run.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRecordsFile, withRun } from "./fixtures/stage-files.js";
import { startTinyEngine, type TinyEngine } from "./fixtures/tiny-engine.js";
import type { LanguageModel } from "../src/backends/language-model.js";
import { createOpenAICompatibleBackend } from "../src/backends/openai-compatible/index.js";
import { AbortedError } from "../src/errors/index.js";
import type { StartServerResult } from "../src/serve/server.js";
import { selfAlignFilterNames } from "../src/stages/self-align/filters.js";
import { type RunSelfAlignOptions, runSelfAlign, type SelfAlignInput } from "../src/stages/self-align/run.js";
import { testSelfAlignConstitution as constitution } from "../src/stages/self-align/test-constitution.js";

const grammar = `root ::= " I am a careful, honest and helpful assistant. " (topic w ". I should follow rules " r ".\\n\\nHadley: " ans | "Hmm.")
topic ::= "The user asks about " | "Clearly this is about " | "Well, it is about " | "A question on "
r ::= "1 (ethical)" | "2 (candor)" | "3 (step-by-step)" | "1 (ethical), 2 (candor)"
ans ::= body | body "\\n\\nUser: thanks"
body ::= "First the " s "Next the " s "Then the " s "After that the " s "Finally the " s "In short the " s
s ::= w " is " w " and " w ". "
w ::= "cat" | "river" | "lamp" | "tree" | "stone"`;

const inputs: SelfAlignInput[] = [
  { id: "p1", instruction: "Tell me about cats." },
  { id: "p2", instruction: "Is it legal to keep a river?", questionType: "legal-expertise" },
  { id: "p3", instruction: "Describe a lamp.", input: "It is on the table." },
  { id: "p4", instruction: "What is a tree?", questionType: "scientific-knowledge" },
  { id: "p5", instruction: "Summarize this text.", input: "word ".repeat(3000) },
  { id: "p6", instruction: "Why are stones hard?" },
];

let dir: string;
let embedded: LanguageModel;
let server: StartServerResult;

let engine: TinyEngine;
beforeAll(async () => {
  engine = await startTinyEngine({ prefix: "selfalign-sa-", seed: 5, contextLength: 2048 });
  ({ dir, backend: embedded, server } = engine);
});

afterAll(async () => {
  await engine?.close();
});

const runInto = (runDir: string, backend: LanguageModel, extra: Partial<RunSelfAlignOptions> = {}) =>
  withRun(runDir, async (run) =>
    runSelfAlign({
      backend,
      store: await run.stage("self-align"),
      constitution,
      inputs,
      concurrency: 2,
      sampling: { grammar, maxTokens: 400, temperature: 1 },
      ...extra,
    }),
  );

const lines = (path: string) => readRecordsFile(path, { sortById: true });

function checkStage(records: Record<string, unknown>[], rejected: Record<string, unknown>[]) {
  expect(records.length + rejected.length).toBe(inputs.length);
  const overflow = rejected.find((record) => record.parentId === "p5");
  expect(overflow).toMatchObject({ filter: "context-overflow" });
  expect(String(overflow?.reason)).toMatch(/more than the 2048-token context/);
  for (const rejection of rejected) {
    expect(selfAlignFilterNames).toContain(rejection.filter);
    expect(String(rejection.reason).length).toBeGreaterThan(5);
  }
  for (const record of records) {
    expect(String(record.thoughts).startsWith("I am a careful, honest and helpful assistant.")).toBe(true);
    expect(String(record.output)).not.toContain("Hadley");
    // The cited ids are exactly the "N (label)" pairs the thoughts name.
    const named = [...String(record.thoughts).matchAll(/\d+ \(([a-z-]+)\)/g)].map((match) => match[1]);
    expect(record.citedPrinciples).toEqual(named);
    expect(record.output).not.toMatch(/^Sorry/);
  }
}

describe("self-align on a tiny GGUF", () => {
  it("answers, filters with named reasons, counts principle usage, and resumes to the same records", async () => {
    const whole = join(dir, "whole");
    const result = await runInto(whole, embedded);
    const records = await lines(join(whole, "self-align", "records.jsonl"));
    const rejected = await lines(join(whole, "self-align", "rejected.jsonl"));
    checkStage(records, rejected);
    expect(result.counts.kept).toBe(records.length);
    expect(records.length).toBeGreaterThan(0);
    expect(rejected.map((record) => record.filter)).toContain("answer-marker");

    const manifest = JSON.parse(await readFile(join(whole, "self-align", "manifest.json"), "utf8"));
    const expected: Record<string, number> = { ethical: 0, candor: 0, "step-by-step": 0 };
    for (const record of records) for (const id of record.citedPrinciples as string[]) expected[id]! += 1;
    expect(manifest.extra.principleUsage.overall).toEqual(expected);
    expect(manifest.extra.principleUsage.records).toBe(records.length);
    expect(result.usage).toEqual({
      promptTokens: manifest.usage.promptTokens,
      completionTokens: manifest.usage.completionTokens,
    });
    expect(result.usage.completionTokens).toBeGreaterThan(0);

    const resumed = join(dir, "resumed");
    const controller = new AbortController();
    await expect(
      runInto(resumed, embedded, {
        signal: controller.signal,
        onProgress: (event) => {
          if (event.type === "record-end") controller.abort();
        },
      }),
    ).rejects.toBeInstanceOf(AbortedError);
    const partial = await lines(join(resumed, "self-align", "records.jsonl"));
    const partialRejected = await lines(join(resumed, "self-align", "rejected.jsonl"));
    expect(partial.length + partialRejected.length).toBeLessThan(inputs.length);
    await runInto(resumed, embedded);
    expect(await lines(join(resumed, "self-align", "records.jsonl"))).toEqual(records);
    expect(await lines(join(resumed, "self-align", "rejected.jsonl"))).toEqual(rejected);
  });

  it("runs through selfalign serve and the HTTP backend", async () => {
    const http = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "tiny", maxContext: 2048 });
    try {
      await runInto(join(dir, "http"), http);
      const records = await lines(join(dir, "http", "self-align", "records.jsonl"));
      const rejected = await lines(join(dir, "http", "self-align", "rejected.jsonl"));
      checkStage(records, rejected);
      for (const record of records) expect(record.backend).toBe(http.id);
    } finally {
      await http.close();
    }
  });
});
