import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSampleRun } from "../../test/fixtures/write-sample-run.js";
import { countVerbNouns, rootVerbNoun } from "./instruction-diversity.js";
import { renderReport } from "./render-report.js";
import { collectReportData, wordHistogram } from "./report-data.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-report-"));
  await writeSampleRun(join(dir, "run"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("instruction diversity heuristic", () => {
  it("finds the root verb and its direct object, skipping openers and determiners", () => {
    expect(rootVerbNoun("Write a short poem about the sea.")).toEqual({ verb: "write", noun: "poem" });
    expect(rootVerbNoun("Please give me three reasons to exercise")).toEqual({ verb: "give", noun: "reasons" });
    expect(rootVerbNoun("Can you summarize this article?")).toEqual({ verb: "summarize", noun: "article" });
    expect(rootVerbNoun("What is the capital of Peru?")).toBeUndefined();
    expect(rootVerbNoun("")).toBeUndefined();
  });

  it("counts verbs and nouns, most frequent first", () => {
    const counts = countVerbNouns(["Write a poem", "Write an email", "Write a poem please", "Explain gravity", "Why?"]);
    expect(counts.total).toBe(5);
    expect(counts.withoutVerb).toBe(1);
    expect(counts.verbs[0]).toEqual({
      verb: "write",
      count: 3,
      nouns: [
        { noun: "poem", count: 2 },
        { noun: "email", count: 1 },
      ],
    });
  });
});

describe("report data", () => {
  it("takes counts from the run store and joins red-team types through parent ids", async () => {
    const data = await collectReportData(join(dir, "run"));
    const byStage = Object.fromEntries(data.stages.map((s) => [s.stage, s]));
    // 12 prompts, every 5th rejected -> 2 rejected (i = 4, 9)
    expect(byStage["self-instruct"]).toMatchObject({ kept: 10, rejected: 2, byFilter: { "rouge-dedup": 2 } });
    expect(byStage["red-team"]).toMatchObject({ kept: 6, rejected: 0 });
    // 16 prompts answered, every 4th rejected -> 4
    expect(byStage["self-align"]).toMatchObject({ kept: 12, rejected: 4, byFilter: { "min-length": 4 } });
    expect(byStage["self-align"]!.usage).toEqual({ promptTokens: 1000, completionTokens: 250 });
    expect(data.records).toHaveLength(12 + 6 + 16);

    // Principle usage counts only kept answers' citations.
    const kept = data.records.filter((r) => r.kept && r.stage === "self-align");
    const expected: Record<string, number> = {};
    for (const r of kept) for (const p of r.principles) expected[p] = (expected[p] ?? 0) + 1;
    expect(data.principleUsage.overall).toEqual(expected);
    // Self-align answers to red-team prompts inherit the question type of their parent.
    const typed = kept.filter((r) => r.questionType !== undefined);
    expect(typed.length).toBeGreaterThan(0);
    expect(Object.keys(data.principleUsage.byType).sort()).toEqual(
      [...new Set(typed.map((r) => r.questionType!))].sort(),
    );

    expect(data.redTeam.map((r) => r.questionType)).toEqual([
      "legal expertise",
      "personal context",
      "real-time information",
    ]);
    expect(data.redTeam.reduce((n, r) => n + r.topics.reduce((m, t) => m + t.questions, 0), 0)).toBe(6);
    expect(data.diversity.total).toBe(16);
    expect(data.lossCurves).toEqual([
      {
        name: join("engrave", "adapter", "loss.jsonl"),
        points: [1, 2, 3, 4, 5].map((s) => ({ step: s, loss: 3 / s })),
      },
    ]);
    expect(data.evaluations).toEqual([
      { name: join("eval", "hhh.json"), task: "hhh", metrics: { accuracy: 0.625, harmless: 0.5, n: 8 } },
    ]);
  });

  it("bins word counts", () => {
    expect(wordHistogram(["one", "two words", "a b c d e", ""]).counts.slice(0, 5)).toEqual([0, 1, 1, 1, 0]); // bins [0], [1], [2-3], [4-7], [8-15]
  });

  it("rejects a missing run directory with a clear error", async () => {
    await expect(collectReportData(join(dir, "nope"))).rejects.toThrow(/run directory not found/);
  });

  it("renders one self-contained file: no external URLs, data escaped inside scripts", async () => {
    const data = await collectReportData(join(dir, "run"));
    // Aggregates are plain JSON inside a <script>: a closing tag in any name must not end it early.
    data.principleUsage.overall["</script><script>alert(1)</script>"] = 1;
    data.records[0]!.output = "</script><script>alert(1)</script>";
    const html = await renderReport(data);
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html).not.toMatch(/<link[^>]+href=/);
    expect(html.match(/<\/script>/g)).toHaveLength(4);
  });
});

describe("red-team in the report", () => {
  it("shows the text a rejected question was judged on, and counts only kept topics in the coverage", async () => {
    const { openRun } = await import("../run-store/index.js");
    const runDir = join(dir, "red-team-run");
    const run = await openRun(runDir, { create: true });
    const topics = await run.stage("red-team-topics");
    await topics.appendRecord({ id: "t1", parentId: "p", epoch: 1, line: 0, questionType: "legal", topic: "Leases" });
    await topics.appendRejected({
      id: "t2",
      parentId: "p",
      epoch: 1,
      line: 1,
      questionType: "legal",
      topic: "lower case topic",
      filter: "topic-capital",
      reason: 'topic starts with "l", not an upper-case letter',
    });
    const questions = await run.stage("red-team");
    await questions.appendRejected({
      id: "q1",
      parentId: "prompt",
      questionType: "legal",
      topic: "Leases",
      text: "6. type: Instructions that require legal expertise, topic: Leases, instructio",
      filter: "question-missing",
      reason: "no complete line",
    });
    await run.close();
    const data = await collectReportData(runDir);
    expect(data.redTeam).toEqual([{ questionType: "legal", topics: [{ topic: "Leases", questions: 0 }] }]);
    const rejected = data.records.find((record) => record.id === "q1")!;
    expect(rejected.output).toContain("topic: Leases, instructio");
    expect(data.records.find((record) => record.id === "t2")?.instruction).toBe("lower case topic");
  });
});
