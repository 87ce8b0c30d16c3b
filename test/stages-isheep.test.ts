/**
 * I-SHEEP end to end on a tiny random-weight GGUF, grammar-constrained through the stages' own `sampling.grammar` option:
 * two full rounds (prompts, answers, rule filter, self-assessment, keep, train, eval); round 2 generates and rates
 * with round 1's adapter, as the model id in each record shows; kill -9 twice in round 2, then a resume that redoes
 * nothing of round 1 and sends no request whose result was stored; `selfalign stage <member> --round 2`; early
 * stopping; the report's round panels and its browser filtered by round; `selfalign isheep`.
 */
import { spawn } from "node:child_process";
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
import { fileSize, killWhen } from "./fixtures/kill-when.js";

let dir: string;
let model: string;
let whole: string;
let first: RunPipelineResult;

const members = ["prompts", "answers", "filter", "rate", "keep", "train", "eval"];
const folder = (runDir: string, member: string, round: number) => join(runDir, `isheep-${member}-round-${round}`);
const records = async (runDir: string, member: string, round: number, file = "records.jsonl") =>
  (await readJsonl<StoreRecord>(join(folder(runDir, member, round), file))).records;
const _size = async (path: string) => (await stat(path).catch(() => undefined))?.size ?? 0;

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
      // The ROUGE-L dedup holds over the whole round, not per generation call (brute force over every pair).
      for (const [i, one] of prompts.entries())
        for (const other of prompts.slice(i + 1))
          expect(rougeL(String(one.instruction), String(other.instruction))).toBeLessThanOrEqual(0.7);
      expect(new Set(prompts.map((prompt) => prompt.parentId)).size).toBeGreaterThan(1);
      // Every prompt answered once, with the one prompt rendering.
      expect(answers.length + answerRejects.length).toBe(prompts.length);
      const filtered = await records(whole, "filter", round);
      const filterRejects = await records(whole, "filter", round, "rejected.jsonl");
      expect(filtered.length + filterRejects.length).toBe(answers.length);
      for (const rejection of filterRejects) expect(ruleFilterNames).toContain(rejection.filter);
      // The grammar's "e.g." and "nonetheless" answers pass the rule filter.
      expect(filtered.some((pair) => /e\.g\.|Nonetheless/.test(String(pair.output)))).toBe(true);
      // ... and none is rejected (each grammar answer has one tail, so an "e.g." answer trips no other rule).
      expect(filterRejects.filter((pair) => /e\.g\.|Nonetheless/.test(String(pair.output)))).toEqual([]);
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
      // The default variant, one-base: the base trained afresh on this round's pairs only, in both rounds.
      const trainManifest = JSON.parse(await readFile(join(folder(whole, "train", round), "manifest.json"), "utf8"));
      expect(trainManifest.extra).toMatchObject({ variant: "one-base", examples: kept.length });
      expect(trainManifest.extra.initAdapter).toBeUndefined();
      for (const example of examples) expect(example.fromRound).toBe(round);
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

  it("isheep-keep's threshold and ratings (both, quality, following) keep what a pass over the stored ratings keeps", async () => {
    const copy = join(dir, "keep-copy");
    await cp(whole, copy, { recursive: true });
    const filtered = await records(whole, "filter", 2);
    const answered = (await records(whole, "answers", 2)).length;
    const scores = new Map<string, number>();
    for (const rating of await records(whole, "rate", 2))
      scores.set(`${rating.parentId}/${rating.aspect}`, Number(rating.score));
    const choices = { both: ["quality", "following"], quality: ["quality"], following: ["following"] } as const;
    const keptSets = new Set<string>();
    for (const [threshold, ratings] of [
      [8, "both"],
      [8, "quality"],
      [8, "following"],
      [6, "both"],
      [9, "quality"],
    ] as const) {
      await rm(folder(copy, "keep", 2), { recursive: true, force: true });
      await runStageCommand("isheep-keep", { run: copy, round: 2, threshold: String(threshold), ratings });
      const expected = filtered
        .filter((pair) => choices[ratings].every((aspect) => (scores.get(`${pair.id}/${aspect}`) ?? 0) > threshold))
        .map((pair) => pair.id)
        .sort();
      const kept = (await records(copy, "keep", 2)).map((pair) => String(pair.parentId)).sort();
      expect(kept, `threshold ${threshold}, ratings ${ratings}`).toEqual(expected);
      const manifest = JSON.parse(await readFile(join(folder(copy, "keep", 2), "manifest.json"), "utf8"));
      expect(manifest.extra.keptRate).toBeCloseTo(expected.length / answered, 10);
      // A pair not kept is rejected as below the threshold or unrated on an aspect that must pass, never both.
      for (const pair of await records(copy, "keep", 2, "rejected.jsonl")) {
        const needed = choices[ratings].map((aspect) => scores.get(`${pair.parentId}/${aspect}`));
        expect(pair.filter).toBe(needed.some((score) => score === undefined) ? "unrated" : "below-threshold");
      }
      keptSets.add(kept.join(","));
    }
    // The settings made different choices on this data (else the test could not tell them apart).
    expect(keptSets.size).toBeGreaterThanOrEqual(3);
  });

  it("samples per round: isheep-prompts generates until it has kept `target` prompts, then stops", async () => {
    const copy = join(dir, "target-copy");
    await cp(whole, copy, { recursive: true });
    await rm(folder(copy, "prompts", 2), { recursive: true, force: true });
    const summary = await runStageCommand("isheep-prompts", {
      run: copy,
      model,
      round: 2,
      target: "3",
      maxCalls: "8",
      batchSize: "2",
      samplingGrammar: promptGrammar,
      samplingMaxTokens: "200",
    });
    expect(summary).toMatch(/\(target\)$/);
    const kept = await records(copy, "prompts", 2);
    // At least the target; past it only by what the last batch in flight (2 calls of at most 3 items) brought.
    expect(kept.length).toBeGreaterThanOrEqual(3);
    expect(kept.length).toBeLessThan(3 + 2 * 3);
    const calls = new Set([...kept, ...(await records(copy, "prompts", 2, "rejected.jsonl"))].map((r) => r.parentId));
    expect(calls.size).toBeLessThan(8);
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

    // The same on the eval score, which starts at round 0 (the base): round 1's probe score must beat the base's
    // by more than 10, impossible on 1-10, so the finished round 2 is not run again and round 3 not at all.
    const byScore = join(dir, "early-stop-eval");
    await cp(whole, byScore, { recursive: true });
    const scoreConfig = isheepTestConfig(model, byScore, 3);
    Object.assign(scoreConfig.config.stages.isheep!, { stopOn: ["eval-score"], minGain: 10 });
    const scored = await runPipeline({ loaded: scoreConfig });
    const scoredIsheep = scored.stages.filter((stage) => stage.stage.startsWith("isheep-"));
    expect(scoredIsheep.filter((stage) => stage.status === "stopped").map((stage) => stage.stage)).toEqual(
      [2, 3].flatMap((round) => members.map((member) => `isheep-${member}-round-${round}`)),
    );
    const eval1 = JSON.parse(await readFile(join(folder(whole, "eval", 1), "manifest.json"), "utf8")).extra;
    expect(scoredIsheep.find((stage) => stage.status === "stopped")!.summary).toBe(
      `stopped before round 2: round 1's eval score ${eval1.score.toFixed(3)} did not beat the base model's ${eval1.baseScore.toFixed(3)} by more than 10`,
    );
    expect(existsSync(folder(byScore, "prompts", 3))).toBe(false);
    // The final adapter is round 1's (as its manifest recorded it: the path in the run that was copied).
    expect(scored.finalAdapter).toBe(first.adapters["isheep-train-round-1"]);
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
    // The same through the command line: nothing to do; a bad variant fails with the field named, no stack.
    const cli = (...args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ["--import", "tsx", join(import.meta.dirname, "..", "src", "cli", "cli.ts"), ...args],
          {
            stdio: "pipe",
            env: { ...process.env, CI: "1" },
          },
        );
        let out = "";
        child.stdout?.on("data", (chunk) => {
          out += chunk;
        });
        child.stderr?.on("data", (chunk) => {
          out += chunk;
        });
        child.on("exit", (code) => resolve({ code, out }));
      });
    const finished = await cli("isheep", "--config", file, "--rounds", "2");
    expect(finished, finished.out).toMatchObject({ code: 0 });
    expect(finished.out).toContain("Nothing to do: every stage of");
    const bad = await cli("isheep", "--config", file, "--variant", "one-best");
    expect(bad.code).not.toBe(0);
    expect(bad.out).toMatch(
      /stages\.isheep\.isheep-train\.variant: invalid option: expected one of "one-base"\|"one-last"\|"total-base"/,
    );
    expect(bad.out).not.toMatch(/\n\s+at /);
    // Flags override the file: a threshold of 9 changes the keep stages (and what follows them).
    const stricter = await isheepPipelineConfig({ config: file, threshold: 9 });
    expect((stricter.config.stages.isheep as Record<string, { threshold?: number }>)["isheep-keep"]!.threshold).toBe(9);
    await expect(isheepPipelineConfig({})).rejects.toThrow(/no model: pass --model/);
    // Each of the paper's variants is a named option, set from a flag and checked by the stage's schema.
    const flagged = await isheepPipelineConfig({
      model,
      run: join(dir, "flags"),
      rounds: 3,
      prompts: 7,
      variant: "total-base",
      rater: "base",
      threshold: 6,
      ratings: "following",
      stopOn: "kept-rate, eval-score",
      probes: 0,
    });
    const group = flagged.config.stages.isheep as Record<string, Record<string, unknown>>;
    expect(group).toMatchObject({ skip: false, rounds: 3, stopOn: ["kept-rate", "eval-score"] });
    expect(group["isheep-prompts"]).toMatchObject({ target: 7 });
    expect(group["isheep-train"]).toMatchObject({ variant: "total-base" });
    expect(group["isheep-rate"]).toMatchObject({ rater: "base" });
    expect(group["isheep-keep"]).toMatchObject({ threshold: 6, ratings: "following" });
    expect(group["isheep-eval"]).toMatchObject({ probes: 0 });
    await expect(isheepPipelineConfig({ model, variant: "one-best" })).rejects.toThrow(/isheep-train.*variant/s);
    await expect(isheepPipelineConfig({ model, ratings: "all" })).rejects.toThrow(/isheep-keep.*ratings/s);
    await expect(isheepPipelineConfig({ model, stopOn: "loss" })).rejects.toThrow(/stopOn/);
    await expect(isheepPipelineConfig({ model, rater: "someone" })).rejects.toThrow(/isheep-rate.*rater/s);
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
      for (const round of data.rounds) {
        const at = `[data-round="${round.round}"]`;
        // Eval score by round (round 1 also shows the base model's).
        const score = await page.textContent(`#round-figures tr${at} td[data-figure="eval score"]`);
        expect(Number(score)).toBeCloseTo(round.figures["eval score"]!, 3);
        // Kept rate by filter: each member's row names its rejections per filter, as the manifests count them.
        for (const member of ["filter", "rate", "keep"]) {
          const manifest = JSON.parse(
            await readFile(join(folder(whole, member, round.round), "manifest.json"), "utf8"),
          );
          const cells = await page.$$eval(`#round-stages tr${at}[data-stage="isheep-${member}"] td`, (tds) =>
            tds.map((td) => td.textContent ?? ""),
          );
          const { kept, rejected, byFilter } = manifest.counts;
          expect(cells.slice(2, 4)).toEqual([String(kept + rejected), String(kept)]);
          expect(cells[4]).toBe(kept + rejected ? `${((100 * kept) / (kept + rejected)).toFixed(1)}%` : "");
          const named = Object.entries(byFilter as Record<string, number>).map(([name, n]) => `${name} ${n}`);
          expect(cells[5]!.split(", ").sort()).toEqual(named.length ? named.sort() : ["none"]);
        }
        // The round's prompts: the count, and the first few kept.
        const prompts = await records(whole, "prompts", round.round);
        expect(await page.$$eval(`#round-prompts ul${at} li`, (items) => items.map((li) => li.textContent))).toEqual(
          prompts.slice(0, 5).map((prompt) => prompt.instruction),
        );
        expect(await page.textContent("#round-prompts")).toContain(
          `Round ${round.round}: ${prompts.length} prompts kept`,
        );
        // Agreement of the two ratings, per round.
        const agreement = data.agreement.find((entry) => entry.round === round.round)!;
        expect(await page.textContent(`#agreement tr${at} td[data-field="pairs"]`)).toBe(String(agreement.pairs));
      }
      const baseScore = await page.textContent('#round-figures tr[data-round="1"] td[data-figure="eval score (base)"]');
      expect(Number(baseScore)).toBeCloseTo(data.rounds[0]!.figures["eval score (base)"]!, 3);
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

/** Options of the resume test's run: more training steps, so a kill can land between two of them. */
const killOptions = { "isheep-train": { train: { maxSteps: 6, rank: 2, threads: 1, checkpointEvery: 1 } } };

/**
 * Start the test pipeline in a child process and kill -9 it once `files` have grown past `bytes` in all; returns what
 * the child wrote on stderr (its progress messages).
 */
async function killDuring(runDir: string, files: string[], bytes = 1): Promise<string> {
  const fixture = join(import.meta.dirname, "fixtures", "isheep-pipeline.ts");
  const grown = async () => (await Promise.all(files.map(fileSize))).reduce((a, b) => a + b, 0);
  return killWhen([fixture, model, runDir, "2", JSON.stringify(killOptions)], async () => (await grown()) >= bytes, {
    what: "the pipeline",
  });
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
  it("kill -9 in each member of round 2 that works, then resume: round 1 untouched, no stored request sent again, round 2 complete", async () => {
    const runDir = join(dir, "killed");
    const round2 = (member: string) => folder(runDir, member, 2);
    const inRound2 = (member: string, file: string) => join(round2(member), file);
    const evalAnswers2 = join(runDir, "isheep-eval-answers-round-2");
    const ledgers = [...members.map(round2), evalAnswers2];
    const config = () => isheepTestConfig(model, runDir, 2, killOptions);

    // What round 2 holds as finished, and how long each folder's request ledger is, before a (re)start.
    const stored = async () => {
      const out = new Map<string, { done: Set<string>; ledger: number }>();
      for (const path of ledgers)
        out.set(path, {
          done: await doneIds(path),
          ledger: (await readJsonl(join(path, "usage.jsonl"))).records.length,
        });
      return out;
    };
    let sent = 0;
    let resent = 0;
    /** Count the requests sent since `before`, and those among them whose result was already stored. */
    const requestsSince = async (before: Awaited<ReturnType<typeof stored>>) => {
      for (const path of ledgers) {
        const { done, ledger } = before.get(path)!;
        const lines = (await readJsonl<StoreRecord>(join(path, "usage.jsonl"))).records.slice(ledger);
        sent += lines.length;
        resent += lines.filter((line) => done.has(line.id)).length;
      }
    };

    // Round 2's prompts: the first kill, after round 1 has finished.
    await killDuring(
      runDir,
      ["records.jsonl", "rejected.jsonl"].map((file) => inRound2("prompts", file)),
    );
    const round1 = Object.assign({}, ...(await Promise.all(members.map((m) => snapshot(folder(runDir, m, 1))))));
    expect(Object.keys(round1).length).toBeGreaterThan(0);
    expect((await records(runDir, "prompts", 2)).length).toBeLessThan(10);
    expect(await readdir(runDir)).not.toContain("isheep-answers-round-2");

    const kills: Array<[member: string, files: string[]]> = [
      ["answers", [inRound2("answers", "records.jsonl")]],
      ["rate", [inRound2("rate", "records.jsonl"), inRound2("rate", "rejected.jsonl")]],
      // Once a checkpoint is in place (after step 1 at the earliest, with 6 steps to go through).
      ["train", [join(round2("train"), "adapter", "checkpoint", "state.json")]],
      ["eval", [join(evalAnswers2, "records.jsonl")]],
    ];
    const messages: Record<string, string> = {};
    for (const [member, files] of kills) {
      const before = await stored();
      messages[member] = await killDuring(runDir, files);
      await requestsSince(before);
      if (member === "train") expect(existsSync(join(round2("train"), "adapter", "adapter.gguf"))).toBe(false);
    }
    // The kill in training came before its end; the next start continued from its checkpoint.
    expect(messages.eval).toMatch(/resuming training at step [1-5] from /);
    const prompts2 = await records(runDir, "prompts", 2);
    expect((await records(runDir, "answers", 2)).length).toBeGreaterThan(0);
    const probesRated = (await records(runDir, "eval", 2)).length;

    const before = await stored();
    const result = await runPipeline({ loaded: config() });
    await requestsSince(before);
    const status = Object.fromEntries(result.stages.map((stage) => [stage.stage, stage.status]));
    for (const member of members) expect(status[`isheep-${member}-round-1`]).toBe("up-to-date");
    expect(status["isheep-eval-round-2"]).toBe("ran");
    // Round 1's files are byte for byte what they were.
    const after = Object.assign({}, ...(await Promise.all(members.map((m) => snapshot(folder(runDir, m, 1))))));
    expect(after).toEqual(round1);
    // No request whose result was stored before a restart was sent again, over the five restarts.
    expect(sent).toBeGreaterThan(0);
    expect(resent).toBe(0);
    // Round 2 is complete: every prompt answered, every filtered pair rated twice and judged, an adapter trained on
    // the kept pairs through all 6 steps, and every probe answered and rated twice.
    expect(await records(runDir, "prompts", 2)).toEqual(prompts2);
    const answered = await records(runDir, "answers", 2);
    expect(answered.length + (await records(runDir, "answers", 2, "rejected.jsonl")).length).toBe(prompts2.length);
    const filtered = await records(runDir, "filter", 2);
    const rated =
      (await records(runDir, "rate", 2)).length + (await records(runDir, "rate", 2, "rejected.jsonl")).length;
    expect(rated).toBe(2 * filtered.length);
    const kept = await records(runDir, "keep", 2);
    expect(kept.length + (await records(runDir, "keep", 2, "rejected.jsonl")).length).toBe(filtered.length);
    const examples = await records(runDir, "train", 2);
    expect(examples.map((example) => example.parentId).sort()).toEqual(kept.map((pair) => pair.id).sort());
    const losses = (await readFile(join(round2("train"), "adapter", "loss.jsonl"), "utf8")).trim().split("\n");
    expect(losses.map((line) => (JSON.parse(line) as { step: number }).step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(result.finalAdapter).toBe(join(round2("train"), "adapter", "adapter.gguf"));
    const probes = (await readJsonl<StoreRecord>(join(evalAnswers2, "records.jsonl"))).records;
    expect(probes).toHaveLength(3);
    const probeRatings =
      (await records(runDir, "eval", 2)).length + (await records(runDir, "eval", 2, "rejected.jsonl")).length;
    expect(probeRatings).toBe(2 * probes.length);
    expect(probeRatings).toBeGreaterThan(probesRated);
    // Finished: running again does nothing.
    expect((await runPipeline({ loaded: config() })).alreadyFinished).toBe(true);
  }, 900_000);
});
