/**
 * I-SHEEP end to end on a tiny random-weight GGUF, grammar-constrained through the stages' own `sampling.grammar` option:
 * two full rounds (prompts, answers, rule filter, self-assessment, keep, train, eval); round 2 generates and rates
 * with round 1's adapter, as the model id in each record shows; kill -9 twice in round 2, then a resume that redoes
 * nothing of round 1 and sends no request whose result was stored; `selfalign stage <member> --round 2`; early
 * stopping; the report's round panels and its browser filtered by round; `selfalign isheep`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runStageCommand } from "../src/cli/commands/stage.js";
import { isheepPipelineConfig } from "../src/cli/commands/isheep.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { readGgufLora } from "../src/training/export/gguf-lora.js";
import { runPipeline, type RunPipelineResult } from "../src/pipeline/run-pipeline.js";
import { collectReportData, writeReport } from "../src/report/index.js";
import { readJsonl, type StoreRecord } from "../src/run-store/index.js";
import { answerPrompt } from "../src/stages/isheep/prompt.js";
import { ruleFilterNames } from "../src/stages/isheep/filters.js";
import { rougeL } from "../src/text/rouge-l.js";
import { chromiumArgs, chromiumPath } from "./fixtures/chromium.js";
import { isheepTestConfig, promptGrammar, ratingGrammar } from "./fixtures/isheep-pipeline.js";

let dir: string;
let model: string;
let whole: string;
let first: RunPipelineResult;

const members = ["prompts", "answers", "filter", "rate", "keep", "train", "eval"];
const folder = (runDir: string, member: string, round: number) => join(runDir, `isheep-${member}-round-${round}`);
const records = async (runDir: string, member: string, round: number, file = "records.jsonl") =>
  (await readJsonl<StoreRecord>(join(folder(runDir, member, round), file))).records;
const size = async (path: string) => (await stat(path).catch(() => undefined))?.size ?? 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-isheep-"));
  model = join(dir, "tiny.gguf");
  await writeTinyModel(model, { seed: 5, contextLength: 4096 });
  whole = join(dir, "whole");
  first = await runPipeline({ loaded: isheepTestConfig(model, whole, 2) });
}, 900_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("I-SHEEP on a tiny GGUF", () => {
  it("runs two full rounds: every member of both rounds, each rejection named, pairs kept above the threshold", async () => {
    const ran = first.stages.filter((stage) => stage.status === "ran").map((stage) => stage.stage);
    expect(ran).toEqual([1, 2].flatMap((round) => members.map((member) => `isheep-${member}-round-${round}`)));
    for (const round of [1, 2]) {
      const prompts = await records(whole, "prompts", round);
      const answers = await records(whole, "answers", round);
      const answerRejects = await records(whole, "answers", round, "rejected.jsonl");
      expect(prompts.length).toBeGreaterThan(0);
      // Every prompt answered once, with the one prompt rendering.
      expect(answers.length + answerRejects.length).toBe(prompts.length);
      const filtered = await records(whole, "filter", round);
      const filterRejects = await records(whole, "filter", round, "rejected.jsonl");
      expect(filtered.length + filterRejects.length).toBe(answers.length);
      for (const rejection of filterRejects) expect(ruleFilterNames).toContain(rejection.filter);
      // The grammar's "e.g." and "nonetheless" answers pass the rule filter.
      expect(filtered.some((pair) => /e\.g\.|Nonetheless/.test(String(pair.output)))).toBe(true);
      // Both aspects rated for every filtered pair; unreadable ratings kept as counted rejections.
      const ratings = await records(whole, "rate", round);
      const unreadable = await records(whole, "rate", round, "rejected.jsonl");
      expect(ratings.length + unreadable.length).toBe(2 * filtered.length);
      for (const rejection of unreadable) {
        expect(rejection).toMatchObject({ filter: "rating-parse" });
        expect(typeof rejection.text).toBe("string");
      }
      const rateManifest = JSON.parse(await readFile(join(folder(whole, "rate", round), "manifest.json"), "utf8"));
      expect(rateManifest.counts.byFilter["rating-parse"] ?? 0).toBe(unreadable.length);
      // Kept: both scores above 8; every rejection says which score failed or was unreadable.
      const kept = await records(whole, "keep", round);
      const dropped = await records(whole, "keep", round, "rejected.jsonl");
      expect(kept.length + dropped.length).toBe(filtered.length);
      expect(kept.length).toBeGreaterThan(0);
      for (const pair of kept) {
        expect(pair.quality as number).toBeGreaterThan(8);
        expect(pair.following as number).toBeGreaterThan(8);
      }
      for (const pair of dropped) {
        if (pair.filter === "below-threshold")
          expect(Math.min(Number(pair.quality), Number(pair.following))).toBeLessThanOrEqual(8);
        else expect(pair).toMatchObject({ filter: "unrated" });
      }
      const keepManifest = JSON.parse(await readFile(join(folder(whole, "keep", round), "manifest.json"), "utf8"));
      expect(keepManifest.extra.keptRate).toBeCloseTo(kept.length / answers.length, 10);
      // One training example per kept pair, in the same prompt format the model answered in.
      const examples = await records(whole, "train", round);
      expect(examples.map((example) => example.parentId).sort()).toEqual(kept.map((pair) => pair.id).sort());
      for (const example of examples)
        expect(example.prompt).toBe(answerPrompt(String(example.instruction), String(example.input)));
      expect(existsSync(join(folder(whole, "train", round), "adapter", "adapter.gguf"))).toBe(true);
      const evalManifest = JSON.parse(await readFile(join(folder(whole, "eval", round), "manifest.json"), "utf8"));
      expect(evalManifest.extra.ratings).toBeGreaterThan(0);
      expect(evalManifest.extra.score).toBeGreaterThanOrEqual(1);
    }
    expect(first.finalAdapter).toBe(join(folder(whole, "train", 2), "adapter", "adapter.gguf"));
  });

  it("generates, answers and rates round 2 with round 1's adapter (the model id in each record)", async () => {
    const adapter = first.adapters["isheep-train-round-1"]!;
    expect(adapter).toBe(join(folder(whole, "train", 1), "adapter", "adapter.gguf"));
    for (const member of ["prompts", "answers", "rate"]) {
      for (const record of await records(whole, member, 1)) expect(record.backend).not.toContain("+lora");
      const round2 = await records(whole, member, 2);
      expect(round2.length).toBeGreaterThan(0);
      for (const record of round2) expect(record.backend).toContain(`+lora:${adapter}`);
    }
    // The eval of round r scores base + round r's adapter; round 1 also scores the base.
    const evalAnswers = await readJsonl<StoreRecord>(join(whole, "isheep-eval-answers-round-1", "records.jsonl"));
    for (const answer of evalAnswers.records) {
      if (answer.model === "base") expect(answer.backend).not.toContain("+lora");
      else expect(answer.backend).toContain(`+lora:${adapter}`);
    }
    const round2Eval = await readJsonl<StoreRecord>(join(whole, "isheep-eval-answers-round-2", "records.jsonl"));
    for (const answer of round2Eval.records)
      expect(answer.backend).toContain(`+lora:${first.adapters["isheep-train-round-2"]}`);
  });

  it("selfalign stage <member> --round 2: --rater base rates with the base; one-last and total-base train round 2", async () => {
    const copy = join(dir, "stage-copy");
    await cp(whole, copy, { recursive: true });
    await rm(folder(copy, "rate", 2), { recursive: true, force: true });
    const summary = await runStageCommand("isheep-rate", {
      run: copy,
      model,
      round: 2,
      rater: "base",
      samplingGrammar: ratingGrammar,
      samplingMaxTokens: "40",
    });
    expect(summary).toMatch(/^isheep-rate: \d+ ratings, \d+ unreadable$/);
    const ratings = await records(copy, "rate", 2);
    expect(ratings.length).toBeGreaterThan(0);
    for (const rating of ratings) expect(rating.backend).not.toContain("+lora");
    // The pairs rated are round 2's.
    const pairs = new Set((await records(copy, "filter", 2)).map((pair) => pair.id));
    for (const rating of ratings) expect(pairs.has(String(rating.parentId))).toBe(true);

    // one-last continues round 1's adapter (rank 2 in the test config), so a requested rank of 4 does not apply.
    await rm(folder(copy, "train", 2), { recursive: true, force: true });
    const train = { run: copy, trainBase: model, round: 2, trainMaxSteps: "1", trainRank: "4", trainThreads: "1" };
    expect(await runStageCommand("isheep-train", { ...train, variant: "one-last" })).toMatch(
      /^isheep-train: one-last: /,
    );
    const lastManifest = JSON.parse(await readFile(join(folder(copy, "train", 2), "manifest.json"), "utf8"));
    expect(lastManifest.extra.initAdapter).toBe(join(folder(whole, "train", 1), "adapter", "adapter.gguf"));
    const continued = await readGgufLora(join(folder(copy, "train", 2), "adapter", "adapter.gguf"));
    expect(continued.adapter.rank).toBe(2);
    // total-base trains the base afresh (rank 4 now) on every round's kept pairs.
    await rm(folder(copy, "train", 2), { recursive: true, force: true });
    expect(await runStageCommand("isheep-train", { ...train, variant: "total-base" })).toMatch(
      /^isheep-train: total-base: /,
    );
    const examples = await records(copy, "train", 2);
    const kept = [...(await records(copy, "keep", 1)), ...(await records(copy, "keep", 2))];
    expect(examples.map((example) => example.parentId).sort()).toEqual(kept.map((pair) => pair.id).sort());
    expect(new Set(examples.map((example) => example.fromRound))).toEqual(new Set([1, 2]));
    const fresh = await readGgufLora(join(folder(copy, "train", 2), "adapter", "adapter.gguf"));
    expect(fresh.adapter.rank).toBe(4);
  });

  it("dedupAcrossRounds keeps round 2's prompts apart from round 1's (ROUGE-L <= 0.7, checked by brute force)", async () => {
    const tooClose = (prompts: StoreRecord[], earlier: StoreRecord[]) =>
      prompts.filter((prompt) =>
        earlier.some((old) => rougeL(String(prompt.instruction), String(old.instruction)) > 0.7),
      ).length;
    const round1 = await records(whole, "prompts", 1);
    const copy = join(dir, "dedup-copy");
    await cp(whole, copy, { recursive: true });
    await rm(folder(copy, "prompts", 2), { recursive: true, force: true });
    await runStageCommand("isheep-prompts", {
      run: copy,
      model,
      round: 2,
      target: "10",
      maxCalls: "8",
      batchSize: "2",
      samplingGrammar: promptGrammar,
      samplingMaxTokens: "200",
      dedupAcrossRounds: true,
    });
    const deduplicated = await records(copy, "prompts", 2);
    expect(deduplicated.length).toBeGreaterThan(0);
    expect(tooClose(deduplicated, round1)).toBe(0);
    // Candidates were dropped for being too close to a round-1 prompt (without the option none could be).
    const rejected = await records(copy, "prompts", 2, "rejected.jsonl");
    const round1Ids = new Set(round1.map((prompt) => prompt.id));
    expect(rejected.some((r) => r.filter === "rouge-dedup" && round1Ids.has(String(r.nearestId)))).toBe(true);
  });

  it("stops early when the kept rate stops improving, leaving the finished rounds as they were", async () => {
    const copy = join(dir, "early-stop");
    await cp(whole, copy, { recursive: true });
    const config = isheepTestConfig(model, copy, 4);
    Object.assign(config.config.stages.isheep!, { stopOn: ["kept-rate"], minGain: 1 });
    const result = await runPipeline({ loaded: config });
    const isheep = result.stages.filter((stage) => stage.stage.startsWith("isheep-"));
    expect(isheep.filter((stage) => stage.status === "up-to-date")).toHaveLength(2 * members.length);
    const stopped = isheep.filter((stage) => stage.status === "stopped");
    expect(stopped.map((stage) => stage.stage)).toEqual(
      [3, 4].flatMap((round) => members.map((member) => `isheep-${member}-round-${round}`)),
    );
    expect(stopped[0]!.summary).toMatch(/^stopped before round 3: round 2's kept rate [\d.]+ did not beat round 1's/);
    expect(existsSync(folder(copy, "prompts", 3))).toBe(false);
  });

  it("selfalign isheep --config runs the same pipeline (here: finished, so nothing to do)", async () => {
    const copy = join(dir, "command");
    await cp(whole, copy, { recursive: true });
    const { config } = isheepTestConfig(model, copy, 2);
    const file = join(dir, "isheep.yaml");
    // JSON is YAML; the other stages' options are dropped by the command (it skips them).
    await writeFile(file, JSON.stringify({ ...config, stages: { isheep: config.stages.isheep } }));
    const loaded = await isheepPipelineConfig({ config: file, rounds: 2 });
    expect(loaded.config.stages["self-align"]).toMatchObject({ skip: true });
    expect(loaded.config.stages.isheep).toMatchObject({ skip: false, rounds: 2 });
    const result = await runPipeline({ loaded });
    expect(result.alreadyFinished).toBe(true);
    // Flags override the file: a threshold of 9 changes the keep stages (and what follows them).
    const stricter = await isheepPipelineConfig({ config: file, threshold: 9 });
    expect((stricter.config.stages.isheep as Record<string, { threshold?: number }>)["isheep-keep"]!.threshold).toBe(9);
    await expect(isheepPipelineConfig({})).rejects.toThrow(/no model: pass --model/);
  });

  it("the report shows both rounds' figures, the rating histograms and agreement, and filters the browser by round", async () => {
    const data = await collectReportData(whole);
    expect(data.rounds.map((round) => round.round)).toEqual([1, 2]);
    for (const round of data.rounds) {
      expect(round.stages.map((stage) => stage.stage)).toEqual([
        ...members.slice(0, 6).map((member) => `isheep-${member}`),
        "isheep-eval",
        "isheep-eval",
      ]);
      expect(round.figures["kept rate"]).toBeGreaterThan(0);
      expect(round.figures["eval score"]).toBeGreaterThanOrEqual(1);
      expect(round.promptCount).toBe((await records(whole, "prompts", round.round)).length);
    }
    expect(data.rounds[0]!.figures["eval score (base)"]).toBeGreaterThanOrEqual(1);
    // Histograms count exactly the stored ratings.
    for (const round of [1, 2]) {
      const ratings = await records(whole, "rate", round);
      const unreadable = await records(whole, "rate", round, "rejected.jsonl");
      const histograms = data.ratings.filter((histogram) => histogram.round === round);
      expect(histograms.map((histogram) => histogram.aspect).sort()).toEqual(["following", "quality"]);
      expect(histograms.reduce((sum, h) => sum + h.counts.reduce((a, b) => a + b, 0), 0)).toBe(ratings.length);
      expect(histograms.reduce((sum, h) => sum + h.unreadable, 0)).toBe(unreadable.length);
      const bothRated = new Map<string, number>();
      for (const rating of ratings)
        bothRated.set(String(rating.parentId), (bothRated.get(String(rating.parentId)) ?? 0) + 1);
      const agreement = data.agreement.find((entry) => entry.round === round);
      expect(agreement?.pairs ?? 0).toBe([...bothRated.values()].filter((n) => n === 2).length);
    }

    if (!existsSync(chromiumPath)) throw new Error(`Chromium not found at ${chromiumPath}: apt-get install chromium`);
    const { path } = await writeReport({ runDir: whole, out: join(dir, "isheep-report.html") });
    const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 2000 } });
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(error.message));
      await page.goto(pathToFileURL(path).href);
      await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
      expect(errors).toEqual([]);
      expect(await page.isVisible("#rounds")).toBe(true);
      expect(await page.isVisible("#ratings")).toBe(true);
      const keptRate = await page.textContent('#round-figures tr[data-round="2"] td[data-figure="kept rate"]');
      expect(Number(keptRate)).toBeCloseTo(data.rounds[1]!.figures["kept rate"]!, 3);
      expect(await page.$$eval("#round-stages tbody tr", (rows) => rows.length)).toBe(2 * 8);
      const total = data.records.length;
      expect(await page.textContent("#result-count")).toBe(`${total} of ${total} records`);
      await page.selectOption("#filter-round", "2");
      const inRound2 = data.records.filter((record) => record.round === 2).length;
      expect(inRound2).toBeGreaterThan(0);
      expect(await page.textContent("#result-count")).toBe(`${inRound2} of ${total} records`);
      await page.selectOption("#filter-stage", "isheep-rate-round-2");
      const ratings2 = data.records.filter((record) => record.stage === "isheep-rate-round-2").length;
      expect(await page.textContent("#result-count")).toBe(`${ratings2} of ${total} records`);
      await page.click("#results li");
      expect(await page.textContent("#detail .meta")).toContain("(round 2)");
      await page.close();
    } finally {
      await browser.close();
    }
  });
});

/** Start the test pipeline in a child process and kill -9 it once `files` have grown past `bytes` in all. */
async function killDuring(runDir: string, files: string[], bytes = 1): Promise<void> {
  const fixture = join(import.meta.dirname, "fixtures", "isheep-pipeline.ts");
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", fixture, model, runDir, "2"], {
    stdio: "pipe",
  });
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  let finished = false;
  const exited = new Promise<void>((resolve) =>
    child.on("exit", () => {
      finished = true;
      resolve();
    }),
  );
  const grown = async () => (await Promise.all(files.map(size))).reduce((a, b) => a + b, 0);
  while (!finished && (await grown()) < bytes) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(finished, `the pipeline ended before it was killed: ${stderr}`).toBe(false);
  child.kill("SIGKILL");
  await exited;
}

/** Every file of a folder (recursively, the adapter's included) with a hash of its content; manifests left out. */
async function snapshot(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(path, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name === "manifest.json") continue;
    const file = join(entry.parentPath, entry.name);
    out[file] = createHash("sha256")
      .update(await readFile(file))
      .digest("hex");
  }
  return out;
}

/** Ids a folder holds as finished: records, rejections and inputs marked done. */
async function doneIds(path: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const file of ["records.jsonl", "rejected.jsonl", "done-items.jsonl"])
    for (const line of (await readJsonl<StoreRecord>(join(path, file))).records) ids.add(line.id);
  return ids;
}

describe("I-SHEEP resume", () => {
  it("kill -9 twice in round 2, then resume: round 1 untouched, no stored request sent again, round 2 complete", async () => {
    const runDir = join(dir, "killed");
    const answers2 = join(folder(runDir, "answers", 2), "records.jsonl");
    await killDuring(runDir, [answers2]);
    const round1 = Object.assign({}, ...(await Promise.all(members.map((m) => snapshot(folder(runDir, m, 1))))));
    expect(Object.keys(round1).length).toBeGreaterThan(0);
    const prompts2 = await records(runDir, "prompts", 2);
    expect((await records(runDir, "answers", 2)).length).toBeLessThan(prompts2.length);
    const rate2 = folder(runDir, "rate", 2);
    await killDuring(runDir, [join(rate2, "records.jsonl"), join(rate2, "rejected.jsonl")]);

    // What round 2 holds before the resume, and how long each folder's request ledger is.
    const round2Folders = [
      ...members.map((member) => folder(runDir, member, 2)),
      join(runDir, "isheep-eval-answers-round-2"),
    ];
    const before = new Map<string, { done: Set<string>; ledger: number }>();
    for (const path of round2Folders) {
      before.set(path, {
        done: await doneIds(path),
        ledger: (await readJsonl(join(path, "usage.jsonl"))).records.length,
      });
    }
    const result = await runPipeline({ loaded: isheepTestConfig(model, runDir, 2) });
    const status = Object.fromEntries(result.stages.map((stage) => [stage.stage, stage.status]));
    for (const member of members) expect(status[`isheep-${member}-round-1`]).toBe("up-to-date");
    // Round 2's prompts had finished before the kills; what was cut off runs again.
    expect(status["isheep-prompts-round-2"]).toBe("up-to-date");
    expect(status["isheep-rate-round-2"]).toBe("ran");
    // Round 1's files are byte for byte what they were.
    const after = Object.assign({}, ...(await Promise.all(members.map((m) => snapshot(folder(runDir, m, 1))))));
    expect(after).toEqual(round1);
    // No request whose result was stored before the resume was sent again.
    let resent = 0;
    let sent = 0;
    for (const path of round2Folders) {
      const { done, ledger } = before.get(path)!;
      const lines = (await readJsonl<StoreRecord>(join(path, "usage.jsonl"))).records.slice(ledger);
      sent += lines.length;
      resent += lines.filter((line) => done.has(line.id)).length;
    }
    expect(sent).toBeGreaterThan(0);
    expect(resent).toBe(0);
    // Round 2 is complete: every prompt answered, every filtered pair rated twice and judged, an adapter trained.
    const answered = await records(runDir, "answers", 2);
    expect(answered.length + (await records(runDir, "answers", 2, "rejected.jsonl")).length).toBe(
      (await records(runDir, "prompts", 2)).length,
    );
    const filtered = await records(runDir, "filter", 2);
    const rated =
      (await records(runDir, "rate", 2)).length + (await records(runDir, "rate", 2, "rejected.jsonl")).length;
    expect(rated).toBe(2 * filtered.length);
    expect(
      (await records(runDir, "keep", 2)).length + (await records(runDir, "keep", 2, "rejected.jsonl")).length,
    ).toBe(filtered.length);
    expect(result.finalAdapter).toBe(join(folder(runDir, "train", 2), "adapter", "adapter.gguf"));
    // Finished: running again does nothing.
    expect((await runPipeline({ loaded: isheepTestConfig(model, runDir, 2) })).alreadyFinished).toBe(true);
  }, 900_000);
});
