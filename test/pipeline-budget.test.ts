/**
 * A run's budget stops it between requests, cleanly and resumably: the next `selfalign run` with a larger budget
 * goes on without sending a paid request again and ends with what an uninterrupted run makes. Real engine (tiny
 * model, deterministic mode so the two runs can be compared record for record), stage 1 only.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runMain } from "../src/cli/run-main.js";
import { BudgetReachedError, budgetExitCode } from "../src/errors/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { type LoadedPipelineConfig, parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
import { readJsonl } from "../src/run-store/index.js";

let dir: string;
let modelPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-budget-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, {
    layers: 2,
    dim: 64,
    heads: 4,
    kvHeads: 2,
    ffn: 128,
    contextLength: 4096,
    seed: 5,
    // Word tokens, so the stage-1 prompt is about a third as many tokens as with bytes (a faster test).
    vocabSize: 49152,
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function loaded(runName: string, budget?: Record<string, number>): LoadedPipelineConfig {
  const config = parsePipelineConfig(
    {
      name: "budget",
      model: modelPath,
      runDir: join(dir, runName),
      engine: { contextSize: 4096, sequences: 1, threads: 1, deterministic: true },
      report: false,
      datasets: false,
      ...(budget ? { budget } : {}),
      stages: {
        // One request per round (batchSize 1), four rounds whatever they keep.
        "self-instruct": { target: 1000, maxRounds: 4, batchSize: 1, sampling: { maxTokens: 24 } },
        "red-team": { skip: true },
        "self-align": { skip: true },
        engrave: { skip: true },
        "verbose-clone": { skip: true },
      },
    },
    "test config",
  );
  return { config, baseDir: dir };
}

/** The stage-1 folder: records (kept and rejected, by id) and the ledger's lines. */
async function folder(runName: string) {
  const read = async (file: string) =>
    (await readJsonl<{ id: string }>(join(dir, runName, "self-instruct", file))).records;
  const byId = (records: { id: string }[]) => records.sort((a, b) => a.id.localeCompare(b.id));
  const ledger = await read("usage.jsonl");
  return {
    records: byId([...(await read("records.jsonl")), ...(await read("rejected.jsonl"))]),
    rounds: (await read("done-items.jsonl")).length,
    ledger: ledger as unknown as Array<{ promptTokens: number; completionTokens: number }>,
  };
}

const tokensOf = (lines: Array<{ promptTokens: number; completionTokens: number }>) =>
  lines.reduce((sum, line) => sum + line.promptTokens + line.completionTokens, 0);

it("stops at the budget after the request that reached it and resumes with a larger one, repeating nothing", async () => {
  await runPipeline({ loaded: loaded("full") });
  const full = await folder("full");
  expect(full.ledger).toHaveLength(4);

  // Reached during round 2: the request of round 3 is not sent.
  const limit = tokensOf(full.ledger.slice(0, 1)) + 1;
  const stopped = await runPipeline({ loaded: loaded("budgeted", { tokens: limit }) }).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(stopped).toBeInstanceOf(BudgetReachedError);
  expect((stopped as BudgetReachedError).field).toBe("budget.tokens");
  expect((stopped as Error).message).toContain(`of budget.tokens ${limit} tokens`);
  const partial = await folder("budgeted");
  expect(partial.ledger).toHaveLength(2);
  expect(partial.rounds).toBe(2);
  expect(partial.ledger).toEqual(full.ledger.slice(0, 2));

  // The same budget again: nothing more is sent.
  await expect(runPipeline({ loaded: loaded("budgeted", { tokens: limit }) })).rejects.toThrow(BudgetReachedError);
  expect((await folder("budgeted")).ledger).toHaveLength(2);

  // A larger budget: the rest, once, and the same records as the uninterrupted run.
  const resumed = await runPipeline({ loaded: loaded("budgeted", { tokens: tokensOf(full.ledger) + 1 }) });
  expect(resumed.usage.promptTokens + resumed.usage.completionTokens).toBe(tokensOf(full.ledger.slice(2)));
  const finished = await folder("budgeted");
  expect(finished.ledger).toEqual(full.ledger);
  expect(finished.records).toEqual(full.records);
});

it("exits with status 3 when the budget stops a command", async () => {
  const before = process.exitCode;
  const stderr = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    await runMain(async () => {
      throw new BudgetReachedError("budget reached");
    });
    expect(process.exitCode).toBe(budgetExitCode);
    expect(budgetExitCode).toBe(3);
  } finally {
    process.stderr.write = stderr;
    process.exitCode = before;
  }
});
