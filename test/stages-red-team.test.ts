/**
 * Stage 1b end to end on a tiny random-weight GGUF through the embedded backend: topic epochs (a grammar keeps the
 * brainstormed lines list-shaped, so the topic filters and per-type dedup see real traffic), balancing, then
 * question prompts per (type, topic). A run stopped early and resumed ends with the files of an uninterrupted run.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRecordsFile, withRun } from "./fixtures/stage-files.js";
import { startTinyEngine, type TinyEngine } from "./fixtures/tiny-engine.js";
import type { LanguageModel } from "../src/backends/language-model.js";
import { createOpenAICompatibleBackend } from "../src/backends/openai-compatible/index.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { AbortedError } from "../src/errors/index.js";
import type { StartServerResult } from "../src/serve/server.js";
import { type RunRedTeamOptions, runRedTeam } from "../src/stages/red-team/run.js";
import { topicFilterNames } from "../src/stages/red-team/topics.js";

const topicGrammar = `root ::= "2. " t "\\n3. " t "\\n4. " t "\\n5. " t "\\n"
t ::= cap " " low | low " " low | cap " " low "." | cap " " low " " low " " low | cap
cap ::= "Tea" | "River" | "Stone" | "Glass"
low ::= "rules" | "maps" | "songs" | "trade"`;

let dir: string;
let backend: LanguageModel;
let constitution: Constitution;
let server: StartServerResult;

let engine: TinyEngine;
beforeAll(async () => {
  engine = await startTinyEngine({ prefix: "selfalign-rt-", seed: 7, contextLength: 2048 });
  ({ dir, backend, server } = engine);
  constitution = await loadConstitution(defaultConstitutionDir());
});

afterAll(async () => {
  await engine?.close();
});

const runInto = (runDir: string, extra: Partial<RunRedTeamOptions> = {}) =>
  withRun(runDir, async (run) =>
    runRedTeam({
      backend,
      topicStore: await run.stage("red-team-topics"),
      store: await run.stage("red-team"),
      constitution: { redTeamTypes: constitution.redTeamTypes.slice(0, 2) },
      epochs: 2,
      maxTopicsPerType: 3,
      batchSize: 2,
      topicSampling: { grammar: topicGrammar, temperature: 1 },
      questionSampling: { maxTokens: 48 },
      ...extra,
    }),
  );

const lines = (path: string) => readRecordsFile(path, { sortById: true });

const files = [
  "red-team-topics/records.jsonl",
  "red-team-topics/rejected.jsonl",
  "red-team/records.jsonl",
  "red-team/rejected.jsonl",
];

describe("red-team on a tiny GGUF", () => {
  it("grows balanced topics, asks one question per (type, topic), and resumes to the same files", async () => {
    const whole = join(dir, "whole");
    const result = await runInto(whole);
    const [type1, type2] = constitution.redTeamTypes.map((type) => type.id);
    // Balanced: both types end with the same number of topics, at most the cap.
    const counts = Object.values(result.counts.topics);
    expect(counts).toHaveLength(2);
    expect(counts[0]).toBe(counts[1]);
    expect(counts[0]).toBeGreaterThan(1);
    expect(counts[0]).toBeLessThanOrEqual(3);

    const topics = await lines(join(whole, files[0]!));
    const topicRejections = await lines(join(whole, files[1]!));
    expect(topics.length).toBeGreaterThan(0);
    for (const topic of topics) {
      expect([type1, type2]).toContain(topic.questionType);
      expect(String(topic.topic)).toMatch(/^[A-Z][a-z]*( [a-z]+){0,2}$/);
    }
    expect(topicRejections.length).toBeGreaterThan(0);
    for (const rejection of topicRejections) expect(topicFilterNames).toContain(rejection.filter);
    // Per-type dedup is case-insensitive.
    for (const type of [type1, type2]) {
      const names = topics.filter((t) => t.questionType === type).map((t) => String(t.topic).toLowerCase());
      expect(new Set(names).size).toBe(names.length);
    }

    // Every (type, topic) pair ends as exactly one question record or one rejection, carrying type and topic.
    const questions = await lines(join(whole, files[2]!));
    const questionRejections = await lines(join(whole, files[3]!));
    const pairs = counts.reduce((sum, n) => sum + n, 0);
    expect(questions.length + questionRejections.length).toBe(pairs);
    for (const record of [...questions, ...questionRejections]) {
      expect([type1, type2]).toContain(record.questionType);
      expect(typeof record.topic).toBe("string");
    }
    for (const rejection of questionRejections) {
      expect(rejection.filter).toBe("question-missing");
      expect(String(rejection.reason)).toMatch(
        /^no complete line starting with "\d+\. type: Instructions that require/,
      );
    }

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
    expect(await lines(join(resumed, files[2]!))).toEqual([]);
    await runInto(resumed);
    for (const file of files) expect(await lines(join(resumed, file))).toEqual(await lines(join(whole, file)));

    // The result reports the tokens of both phases, and only those this call used: a finished run uses none.
    const usageOf = async (stage: string) =>
      JSON.parse(await readFile(join(whole, stage, "manifest.json"), "utf8")).usage as typeof result.usage;
    const topicUsage = await usageOf("red-team-topics");
    const questionUsage = await usageOf("red-team");
    expect(topicUsage.completionTokens).toBeGreaterThan(0);
    expect(questionUsage.completionTokens).toBeGreaterThan(0);
    expect(result.usage).toEqual({
      promptTokens: topicUsage.promptTokens + questionUsage.promptTokens,
      completionTokens: topicUsage.completionTokens + questionUsage.completionTokens,
    });
    expect((await runInto(whole)).usage).toEqual({ promptTokens: 0, completionTokens: 0 });
  });

  it("runs through selfalign serve and the HTTP backend", async () => {
    const http = createOpenAICompatibleBackend({ baseUrls: [server.url], model: "tiny", maxContext: 2048 });
    try {
      const result = await runInto(join(dir, "http"), { backend: http, epochs: 1 });
      const pairs = Object.values(result.counts.topics).reduce((sum, n) => sum + n, 0);
      expect(pairs).toBeGreaterThan(0);
      const questions = await lines(join(dir, "http", files[2]!));
      const rejected = await lines(join(dir, "http", files[3]!));
      expect(questions.length + rejected.length).toBe(pairs);
    } finally {
      await http.close();
    }
  });
});
