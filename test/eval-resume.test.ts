/**
 * Evaluations resume through the run store: a stopped (Ctrl+C) or killed (`kill -9`) eval run again scores only
 * what was left, and ends with exactly the result of an uninterrupted run. Real engines: tiny GGUFs through the
 * embedded llama.cpp backend, the CLI as a child process.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LanguageModel } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { AbortedError } from "../src/errors/index.js";
import { loadTruthfulQa, type TruthfulQaItem } from "../src/eval/data/truthfulqa.js";
import type { EvalResult } from "../src/eval/eval-result.js";
import { runTruthfulQaMc } from "../src/eval/tasks/truthfulqa-mc.js";
import { writeTinyModel } from "../src/gguf/index.js";
import type { ProgressEvent } from "../src/progress/progress-event.js";
import { openRun, readJsonl } from "../src/run-store/index.js";
import { CountingModel } from "./eval-counting-model.js";
import { killWhen } from "./fixtures/kill-when.js";

const root = join(import.meta.dirname, "..");
const cli = join(root, "src", "cli", "cli.ts");
const tsx = pathToFileURL(join(root, "node_modules", "tsx", "dist", "loader.mjs")).href;
let dir: string;
let model: LanguageModel;
let items: TruthfulQaItem[];

/** A TruthfulQA CSV of `count` made-up questions with three to five candidates each. */
function truthfulQaCsv(count: number): string {
  const rows = Array.from({ length: count }, (_, i) => {
    const wrong = ["Yes, always", "Only on Mondays", "It depends on the moon", "Never at all"].slice(0, 2 + (i % 3));
    return `Adversarial,Misc,"Is ${i} a number?","Yes, ${i} is a number","Yes; It is","${wrong.join("; ")}",x`;
  });
  return `Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n${rows.join("\n")}\n`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-eval-resume-"));
  await writeTinyModel(join(dir, "m.gguf"), { seed: 41, contextLength: 1024 });
  await writeFile(join(dir, "tqa.csv"), truthfulQaCsv(10));
  // A small-context model, and a question set in which question 4 is longer than its context.
  await writeTinyModel(join(dir, "small.gguf"), { seed: 42, contextLength: 512 });
  const questions = Array.from({ length: 10 }, (_, i) => ({
    question_id: 100 + i,
    category: i % 2 ? "writing" : "math",
    turns:
      i === 4 ? [`Summarise this: ${"a long story about rain. ".repeat(30)}`] : [`Name thing ${i}.`, "And one more?"],
  }));
  await writeFile(join(dir, "question.jsonl"), questions.map((q) => `${JSON.stringify(q)}\n`).join(""));
  items = (await loadTruthfulQa(join(dir, "tqa.csv"))).slice(0, 8);
  model = await createLlamaCppBackend({ model: join(dir, "m.gguf"), contextSize: 1024, threads: 1 });
});

afterAll(async () => {
  await model?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The result without the time it was written, for comparing runs. */
function comparable(result: EvalResult): Omit<EvalResult, "createdAt"> {
  const { createdAt: _, ...rest } = result;
  return rest;
}

// Each test starts several CLI processes that load the engine: minutes on a busy 2-core machine.
describe("a stopped evaluation resumes from the run store", { timeout: 300_000 }, () => {
  it("scores only the items left, and ends with the result of an uninterrupted run", async () => {
    const uninterrupted = await runTruthfulQaMc({ model, items, metric: "mc2" });
    const storeDir = join(dir, "stopped");

    // First run: stop (as Ctrl+C does) once three items are finished.
    const stop = new AbortController();
    const first = await openRun(storeDir, { create: true });
    const error = await runTruthfulQaMc({
      model,
      items,
      metric: "mc2",
      store: first,
      signal: stop.signal,
      concurrency: 1,
      onProgress: (event) => {
        if (event.type === "record-end" && event.done === 3) stop.abort();
      },
    }).catch((caught: unknown) => caught);
    await first.close();
    expect(error).toBeInstanceOf(AbortedError);
    const stored = await readJsonl(join(storeDir, "truthfulqa-mc2", "records.jsonl"));
    expect(stored.records.length).toBeGreaterThanOrEqual(3);
    expect(stored.records.length).toBeLessThan(items.length);

    // Second run: only the rest goes to the model.
    const counting = new CountingModel(model);
    const events: ProgressEvent[] = [];
    const second = await openRun(storeDir);
    const resumed = await runTruthfulQaMc({
      model: counting,
      items,
      metric: "mc2",
      store: second,
      onProgress: (event) => events.push(event),
    });
    await second.close();
    expect(counting.scoreCalls).toHaveLength(items.length - stored.records.length);
    const scoredNow = new Set(counting.scoreCalls.map((call) => call.prompt));
    for (const record of stored.records) expect(scoredNow.has(record.prompt as string)).toBe(false);
    expect(events.find((event) => event.type === "stage-start")).toMatchObject({
      total: items.length,
      done: stored.records.length,
    });
    expect(differences(comparable(resumed), comparable(uninterrupted))).toEqual([]);
  });

  it("sets aside items made with other settings, and brings them back when those settings return", async () => {
    const storeDir = join(dir, "settings");
    const run = async (fewShotPrompt: string | undefined, counting: CountingModel, messages: string[]) => {
      const store = await openRun(storeDir, { create: true });
      try {
        return await runTruthfulQaMc({
          model: counting,
          items: items.slice(0, 3),
          metric: "mc1",
          store,
          ...(fewShotPrompt ? { fewShotPrompt } : {}),
          onProgress: (event) => {
            if (event.type === "message") messages.push(event.text);
          },
        });
      } finally {
        await store.close();
      }
    };
    const ours = new CountingModel(model);
    const oursResult = await run(undefined, ours, []);
    expect(ours.scoreCalls).toHaveLength(3);

    // Another few-shot text: the stored items are not reused, they are moved aside.
    const other = new CountingModel(model);
    const messages: string[] = [];
    const otherResult = await run("Q: Is water wet?\nA: Yes, water is wet.", other, messages);
    expect(other.scoreCalls).toHaveLength(3);
    expect(otherResult.items[0]!.prompt.startsWith("Q: Is water wet?")).toBe(true);
    expect(messages.join("\n")).toMatch(/3 stored items were made with other settings .*fewShotPrompt.* moved them to/);
    // The folders are guarded like every stage's: a .settings-key naming the settings, the set-aside one under
    // previous/<task>-<key>/ with its own.
    const [aside] = await readdir(join(storeDir, "previous"));
    expect(aside).toMatch(/^truthfulqa-mc1-[0-9a-f]{16}$/);
    const keys = await Promise.all(
      [join(storeDir, "truthfulqa-mc1"), join(storeDir, "previous", aside!, "truthfulqa-mc1")].map(
        async (folder) => (JSON.parse(await readFile(join(folder, ".settings-key"), "utf8")) as { key: string }).key,
      ),
    );
    expect(keys[0]).not.toBe(keys[1]);

    // Back to the first settings: those items come back and nothing is scored again.
    const again = new CountingModel(model);
    const back: string[] = [];
    const againResult = await run(undefined, again, back);
    expect(again.scoreCalls).toHaveLength(0);
    expect(back.join("\n")).toMatch(/brought back the items stored earlier/);
    expect(comparable(againResult)).toEqual(comparable(oursResult));
  });
});

/**
 * Paths where `a` and `b` differ: numbers by more than 1e-6 relative (a few float32 ulps), anything else at all.
 * Log-probabilities of a process that starts mid-way differ from an uninterrupted one's in float32's last bits (the
 * engine reuses a cached prompt prefix and batches items differently, so a prompt is evaluated in other batch shapes;
 * CI measured up to 3e-8 relative); every decision and text must be the same.
 */
function differences(a: unknown, b: unknown, path = "$"): string[] {
  if (typeof a === "number" && typeof b === "number") {
    return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b)) ? [] : [`${path}: ${a} vs ${b}`];
  }
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((key) =>
      differences((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${path}.${key}`),
    );
  }
  return a === b ? [] : [`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`];
}

/** Run the CLI to its end. */
async function selfalign(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", tsx, cli, ...args], {
    cwd: dir,
    env: { ...process.env, CI: "1" },
    stdio: "pipe",
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  return { code, stdout, stderr };
}

async function lineCount(path: string): Promise<number> {
  return (await readFile(path, "utf8").catch(() => "")).split("\n").length - 1;
}

/** Start the CLI and `kill -9` it once `records` holds `lines` lines; fails if it finished first. */
async function killAfter(args: string[], records: string, lines: number): Promise<void> {
  await killWhen([cli, ...args], async () => (await lineCount(records)) >= lines, {
    what: "the eval",
    cwd: dir,
    env: { ...process.env, CI: "1" },
    pollMs: 10,
  });
}

describe("selfalign eval after kill -9", { timeout: 300_000 }, () => {
  it("truthfulqa-mc2: the re-run continues without re-scoring and writes the uninterrupted run's result", async () => {
    const args = (out: string) => [
      "eval",
      "truthfulqa-mc2",
      "--model",
      "m.gguf",
      "--data",
      "tqa.csv",
      "--concurrency",
      "1",
      "--out",
      out,
    ];
    const records = join(dir, "killed-items", "truthfulqa-mc2", "records.jsonl");
    await killAfter(args("killed.json"), records, 3);
    const before = await readFile(records, "utf8");
    // Killed mid-way: some items stored, no eval.json yet.
    expect(before.split("\n").length - 1).toBeLessThan(10);
    await expect(stat(join(dir, "killed.json"))).rejects.toThrow();

    const resumed = await selfalign(args("killed.json"));
    expect(resumed.stderr).not.toMatch(/error/i);
    expect(resumed.code).toBe(0);
    // The torn last line (if any) is dropped; every complete line is kept as it was, and not scored again.
    const kept = (await readJsonl(records, {})).records.length;
    const done = /truthfulqa-mc2: started, 10 items \((\d+) already done, resuming\)/.exec(resumed.stderr);
    expect(Number(done?.[1])).toBeGreaterThanOrEqual(3);
    expect((await readFile(records, "utf8")).startsWith(before.slice(0, before.lastIndexOf("\n") + 1))).toBe(true);
    expect(kept).toBe(10);

    const full = await selfalign(args("full.json"));
    expect(full.code).toBe(0);
    const read = async (name: string) => comparable(JSON.parse(await readFile(join(dir, name), "utf8")) as EvalResult);
    const [killed, uninterrupted] = [await read("killed.json"), await read("full.json")];
    expect(killed.items).toHaveLength(10);
    expect(differences(killed, uninterrupted)).toEqual([]);
    // Each item's prediction and texts are exactly the same; the scores agree to float precision.
    expect(killed.items.map((item) => (item as { predicted: number }).predicted)).toEqual(
      uninterrupted.items.map((item) => (item as { predicted: number }).predicted),
    );
  });

  it("generate-answers: a question longer than the context is skipped, the rest answered; a re-run continues", async () => {
    const args = (out: string) => [
      "eval",
      "generate-answers",
      "--model",
      "small.gguf",
      "--data",
      "question.jsonl",
      "--temperature",
      "0",
      "--max-tokens",
      "8",
      "--concurrency",
      "1",
      "--out",
      out,
    ];
    const records = join(dir, "answers-killed-items", "generate-answers", "records.jsonl");
    await killAfter(args("answers-killed.json"), records, 2);
    const resumed = await selfalign(args("answers-killed.json"));
    expect(resumed.code, resumed.stderr).toBe(0);
    const done = /generate-answers: started, 10 items \((\d+) already done, resuming\)/.exec(resumed.stderr);
    expect(Number(done?.[1])).toBeGreaterThanOrEqual(2);
    // The long question is reported, not fatal: a warning with its reason, and the answers file for the rest.
    expect(resumed.stderr).toMatch(
      /warning: question 104 skipped \(context-overflow\): turn 1: the prompt has \d+ tokens, which leaves no room in the model's 512-token context/,
    );
    expect(resumed.stderr).toContain("selfalign: wrote 9 answers to answers-answers-killed.jsonl (1 questions skipped");
    const result = JSON.parse(await readFile(join(dir, "answers-killed.json"), "utf8")) as EvalResult<{
      question_id: number;
      choices: Array<{ turns: string[] }>;
    }>;
    expect(result.items.map((item) => item.question_id)).toEqual(
      Array.from({ length: 10 }, (_, i) => 100 + i).filter((id) => id !== 104),
    );
    expect(result.items.every((item) => item.choices[0]!.turns.length === 2)).toBe(true);
    expect(result.skipped).toEqual([
      { id: "104", filter: "context-overflow", reason: expect.stringMatching(/^turn 1: the prompt has \d+ tokens/) },
    ]);
    expect(result.aggregate).toMatchObject({ n: 9, skipped: 1, turns: 18 });
    // The skip record keeps the question that was tried.
    const rejected = await readJsonl(join(dir, "answers-killed-items", "generate-answers", "rejected.jsonl"));
    expect(rejected.records).toHaveLength(1);
    expect(rejected.records[0]).toMatchObject({ id: "104", question: [expect.stringContaining("a long story")] });
    const answers = (await readFile(join(dir, "answers-answers-killed.jsonl"), "utf8")).trim().split("\n");
    expect(answers).toHaveLength(9);

    const full = await selfalign(args("answers-full.json"));
    expect(full.code).toBe(0);
    const uninterrupted = JSON.parse(await readFile(join(dir, "answers-full.json"), "utf8")) as typeof result;
    const texts = (value: typeof result) => value.items.map((item) => [item.question_id, item.choices[0]!.turns]);
    expect(texts(result)).toEqual(texts(uninterrupted));
    expect(result.skipped).toEqual(uninterrupted.skipped);
  });
});
