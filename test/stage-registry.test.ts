import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runStageCommand } from "../src/cli/commands/stage.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { formatPipelineSummary } from "../src/cli/commands/run.js";
import { ConfigError } from "../src/errors/index.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
import { defaultRegistry } from "../src/pipeline/stage-registry.js";
import { collectReportData } from "../src/report/index.js";
import { openRun, readJsonl, type StoreRecord } from "../src/run-store/index.js";
import { mergeStage } from "../src/stages/shared/merge-stage.js";
import { loadConstitution, defaultConstitutionDir } from "../src/constitution/index.js";
import { fileSize, killWhen } from "./fixtures/kill-when.js";
import { toyConfig, toyOnly } from "./fixtures/toy-pipeline.js";
import { toyLoopGroup, toyRegistry } from "./fixtures/toy-stages.js";

let dir: string;
let model: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-registry-"));
  model = join(dir, "tiny.gguf");
  await writeTinyModel(model, { seed: 5, contextLength: 4096 });
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const byId = (records: StoreRecord[]) => [...records].sort((a, b) => a.id.localeCompare(b.id));
const _size = async (path: string) => (await stat(path).catch(() => undefined))?.size ?? 0;

/** Start the toy pipeline in a child process and kill -9 it once its records file has grown by `bytes`. */
async function killToyPipelineAfter(runDir: string, items: number, bytes: number): Promise<void> {
  const fixture = join(import.meta.dirname, "fixtures", "toy-pipeline.ts");
  const records = join(runDir, "toy", "records.jsonl");
  const start = await fileSize(records);
  await killWhen([fixture, model, runDir, String(items)], async () => (await fileSize(records)) >= start + bytes, {
    what: "the toy pipeline",
  });
}

describe("a stage defined in one test file", () => {
  it("runs in a pipeline, and a run killed with kill -9 twice then resumed equals an uninterrupted run", async () => {
    const items = 120;
    const whole = join(dir, "toy-whole");
    const first = await runPipeline({ loaded: toyConfig(model, whole, items) });
    expect(first.stages).toMatchObject([{ stage: "toy", status: "ran", kept: items * 2 }]);
    const expected = byId((await readJsonl(join(whole, "toy", "records.jsonl"))).records);
    // Every stage's kept records are also a dataset: Parquet with a card.
    const card = await readFile(join(whole, "exports", "toy", "README.md"), "utf8");
    expect(card).toContain(`${items * 2}`);
    expect((await stat(join(whole, "exports", "toy", "records.parquet"))).size).toBeGreaterThan(0);

    const killed = join(dir, "toy-killed");
    await killToyPipelineAfter(killed, items, 2_000);
    await killToyPipelineAfter(killed, items, 6_000);
    const partial = (await readJsonl(join(killed, "toy", "records.jsonl"))).records;
    expect(partial.length).toBeGreaterThan(0);
    expect(partial.length).toBeLessThan(items * 2);
    const resumed = await runPipeline({ loaded: toyConfig(model, killed, items) });
    expect(resumed.stages[0]).toMatchObject({ status: "ran", kept: items * 2, rejected: 0 });
    expect(byId((await readJsonl(join(killed, "toy", "records.jsonl"))).records)).toEqual(expected);
    // The token ledger counts every request that was paid for, the ones redone after a kill included.
    const ledger = (await readJsonl<{ completionTokens: number }>(join(killed, "toy", "usage.jsonl"))).records;
    expect(ledger.length).toBeGreaterThanOrEqual(items);
    // Finished: nothing to do.
    expect((await runPipeline({ loaded: toyConfig(model, killed, items) })).alreadyFinished).toBe(true);
  });

  it("runs sharded through `selfalign stage`, merges keeping every sample, and shows in the report", async () => {
    const runDir = join(dir, "toy-shards");
    const options = { run: runDir, model: `llama-cpp:${model}`, items: 8, maxTokens: 6 };
    for (const shard of ["0/2", "1/2"]) {
      const summary = await runStageCommand("toy", { ...options, shard }, undefined, undefined, toyRegistry);
      expect(summary).toMatch(/^toy: kept \d+$/);
    }
    // Other settings refuse to join a shard folder.
    await expect(
      runStageCommand("toy", { ...options, maxTokens: 5, shard: "0/2" }, undefined, undefined, toyRegistry),
    ).rejects.toThrow(/holds records made with other settings \(maxTokens: 6 then, 5 now\)/);
    const run = await openRun(runDir);
    try {
      const constitution = await loadConstitution(defaultConstitutionDir());
      const merged = await mergeStage({ run, stage: "toy", constitution, registry: toyRegistry });
      // Two samples of each of the 8 items: a second sample of a prompt is not a duplicate.
      expect(merged).toMatchObject({ shards: 2, read: 16, kept: 16, dropped: 0, missingShards: [] });
    } finally {
      await run.close();
    }
    const report = await collectReportData(runDir, toyRegistry);
    const toyRecords = report.records.filter((record) => record.stage === "toy");
    expect(toyRecords).toHaveLength(16);
    expect(toyRecords[0]?.instruction).toMatch(/^Item \d+$/);
    expect(report.lengths.answers.counts.reduce((sum, n) => sum + n, 0)).toBeGreaterThan(0);
  });
});

describe("rounds", () => {
  it("repeats a group with the previous round's adapter, resuming the finished rounds", async () => {
    const runDir = join(dir, "loop");
    const loaded = (rounds: number) => ({
      config: parsePipelineConfig(
        {
          name: "loop",
          model,
          runDir,
          report: false,
          engine: { contextSize: 256, threads: 1 },
          stages: { toyloop: { skip: false, rounds } },
        },
        "loop config",
        undefined,
        [toyLoopGroup],
      ),
      baseDir: runDir,
      registry: [toyLoopGroup],
    });
    const one = await runPipeline({ loaded: loaded(1) });
    expect(one.stages.map((stage) => [stage.stage, stage.status])).toEqual([
      ["toyloop-generate-round-1", "ran"],
      ["toyloop-train-round-1", "ran"],
    ]);
    const two = await runPipeline({ loaded: loaded(2) });
    expect(two.stages.map((stage) => [stage.stage, stage.status])).toEqual([
      ["toyloop-generate-round-1", "up-to-date"],
      ["toyloop-train-round-1", "up-to-date"],
      ["toyloop-generate-round-2", "ran"],
      ["toyloop-train-round-2", "ran"],
    ]);
    const round = async (n: number) =>
      (await readJsonl<{ backend: string }>(join(runDir, `toyloop-generate-round-${n}`, "records.jsonl"))).records;
    const adapter = one.adapters["toyloop-train-round-1"]!;
    expect(adapter).toBe(join(runDir, "toyloop-train-round-1", "adapter", "adapter.gguf"));
    // Round 1 generated with the base; round 2 with the base plus round 1's adapter.
    for (const record of await round(1)) expect(record.backend).not.toContain("+lora");
    for (const record of await round(2)) expect(record.backend).toContain(`+lora:${adapter}`);
    expect(two.finalAdapter).toBe(join(runDir, "toyloop-train-round-2", "adapter", "adapter.gguf"));
  });
});

describe("eligibility", () => {
  it("a context too small for a stage's prompts stops the run before any work, naming the option; fixed, it runs", async () => {
    const runDir = join(dir, "overflow");
    const loaded = (contextSize: number) => ({
      config: parsePipelineConfig(
        {
          name: "overflow",
          model,
          runDir,
          report: false,
          engine: { contextSize, sequences: 1, threads: 1 },
          stages: {
            "self-instruct": { target: 2, maxRounds: 2, sampling: { maxTokens: 16 } },
            "red-team": { skip: true },
            "self-align": { skip: true },
            engrave: { skip: true },
            "verbose-clone": { skip: true },
          },
        },
        "overflow config",
      ),
      baseDir: runDir,
    });
    // Every stage-1 prompt (about 2,300 byte tokens) overflows 256 tokens: a ConfigError before any request, where
    // the run used to reject each prompt as context-overflow (retryable rejections: src/run-store tests).
    const small = await runPipeline({ loaded: loaded(256) }).catch((error: unknown) => error);
    expect(small).toBeInstanceOf(ConfigError);
    expect((small as ConfigError).field).toBe("engine.contextSize");
    expect((small as Error).message).toMatch(
      /every prompt has at least \d+ tokens .* more than the 256-token context, so every request would be rejected; raise engine\.contextSize/,
    );
    await expect(readJsonl(join(runDir, "self-instruct", "usage.jsonl"))).resolves.toMatchObject({ records: [] });
    const fixed = await runPipeline({ loaded: loaded(4096) });
    expect(fixed.alreadyFinished).toBe(false);
    expect(fixed.usage.completionTokens).toBeGreaterThan(0);
    expect(fixed.stages[0]!.byFilter?.["context-overflow"]).toBeUndefined();
    const done = (await readJsonl(join(runDir, "self-instruct", "done-items.jsonl"))).records;
    expect(done).toHaveLength(2);
  });

  it("a stage that kept nothing is a loud warning naming the stages that ran without it", async () => {
    const runDir = join(dir, "nothing");
    const result = await runPipeline({
      loaded: {
        config: parsePipelineConfig(
          {
            name: "nothing",
            model,
            runDir,
            report: false,
            datasets: false,
            // Room for the ~8,600-byte-token stage-2 prompt (the check before work measures it).
            engine: { contextSize: 12288, sequences: 1, threads: 1 },
            stages: {
              // One token per round: no instruction can be parsed, so nothing is kept.
              "self-instruct": { target: 2, maxRounds: 1, sampling: { maxTokens: 1 } },
              "red-team": { skip: true },
              "self-align": { maxPrompts: 2, sampling: { maxTokens: 8 } },
              engrave: { skip: true },
              "verbose-clone": { skip: true },
            },
          },
          "nothing config",
        ),
        baseDir: runDir,
      },
    });
    expect(result.stages[0]).toMatchObject({ stage: "self-instruct", kept: 0 });
    const summary = formatPipelineSummary(result);
    expect(summary).toContain("WARNING: self-instruct KEPT NO RECORDS");
    expect(summary).toContain("self-align ran without anything from it");
  });

  it("names the maxTokens to lower when the prompt fits but its answer cannot, and a cutoffLen past the model", async () => {
    const runDir = join(dir, "lengths");
    const attempt = (stages: Record<string, unknown>) =>
      runPipeline({
        loaded: {
          config: parsePipelineConfig(
            {
              name: "lengths",
              model,
              runDir,
              report: false,
              engine: { contextSize: 4096, sequences: 1, threads: 1 },
              stages: {
                "self-instruct": { skip: true },
                "red-team": { skip: true },
                "self-align": { skip: true },
                engrave: { skip: true },
                "verbose-clone": { skip: true },
                ...stages,
              },
            },
            "lengths config",
          ),
          baseDir: runDir,
        },
      }).then(
        () => new ConfigError("the run started"),
        (error: unknown) => error as ConfigError,
      );
    const answer = await attempt({ "red-team": { epochs: 1, questionSampling: { maxTokens: 4000 } } });
    expect(answer).toBeInstanceOf(ConfigError);
    expect(answer.field).toBe("stages.red-team.questionSampling.maxTokens");
    expect(answer.message).toMatch(
      /red-team: every question prompt has at least (\d+) tokens \(its longest \d+\) and asks for 4000 new ones/,
    );
    const prompt = Number(/at least (\d+) tokens/.exec(answer.message)![1]);
    expect(answer.message).toContain(`lower stages.red-team.questionSampling.maxTokens to at most ${4096 - prompt}`);
    const cutoff = await attempt({ engrave: { train: { cutoffLen: 5000 } } });
    expect(cutoff).toBeInstanceOf(ConfigError);
    expect(cutoff.field).toBe("stages.engrave.train.cutoffLen");
    expect(cutoff.message).toContain("cutoffLen 5000 is longer than the 4096 tokens");
  });
});

it("the pipeline runner names no stage", async () => {
  const source = await readFile(join(import.meta.dirname, "..", "src", "pipeline", "run-pipeline.ts"), "utf8");
  const code = source.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
  for (const entry of defaultRegistry) expect(code).not.toContain(`"${entry.name}"`);
  // Nor imports one: it knows stages only through the registry.
  expect(code).not.toMatch(/from "\.\.\/stages\//);
  expect(toyOnly).toHaveLength(1);
});
