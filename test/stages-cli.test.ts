/**
 * `selfalign stage` and `selfalign merge`: the stage command writes run.json and the stage files on a tiny GGUF
 * (sharded), refuses self-align without prompts, and merge joins shards with global dedup, idempotently.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRecordsFile as readLines } from "./fixtures/stage-files.js";
import { runMergeCommand } from "../src/cli/commands/merge.js";
import { registerStage, runStageCommand } from "../src/cli/commands/stage.js";
import { ConfigError } from "../src/errors/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { openRun, parseShard } from "../src/run-store/index.js";
import { readFolderSettings, writeFolderSettings } from "../src/pipeline/stage-settings.js";

let dir: string;
let model: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-stage-cli-"));
  model = join(dir, "tiny.gguf");
  await writeTinyModel(model, { seed: 2, contextLength: 4096 });
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("selfalign stage", () => {
  it("runs a sharded self-instruct stage from the command line and records the run's provenance", async () => {
    const runDir = join(dir, "cli-run");
    const program = new Command().exitOverride();
    registerStage(program);
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(
        [
          "stage",
          "self-instruct",
          "--run",
          runDir,
          "--model",
          `llama-cpp:${model}`,
          "--shard",
          "1/2",
          "--target",
          "3",
          "--max-tokens",
          "16",
          "--max-rounds-without-progress",
          "2",
          "--batch-size",
          "1",
        ],
        { from: "user" },
      );
    } finally {
      process.stdout.write = write;
    }
    expect(written.join("")).toMatch(
      /^self-instruct: kept \d+, rejected \d+ after \d+ rounds \((no-progress|target)\)\n$/,
    );
    const info = JSON.parse(await readFile(join(runDir, "run.json"), "utf8"));
    expect(info.backends.generator).toBe(`llama-cpp:${model}`);
    expect(info.constitutionHash).toMatch(/^[0-9a-f]{16,}$/);
    const manifest = JSON.parse(await readFile(join(runDir, "self-instruct", "shard-1-of-2", "manifest.json"), "utf8"));
    expect(manifest.shard).toEqual({ index: 1, count: 2 });
    expect(manifest.usage.completionTokens).toBeGreaterThan(0);
  });

  it("refuses to add records made with other sampling settings to a stage folder, and resumes with the same ones", async () => {
    const run = join(dir, "settings-run");
    const options = {
      run,
      model: `llama-cpp:${model}`,
      target: 2,
      maxRoundsWithoutProgress: 1,
      batchSize: 1,
      maxTokens: 16,
    };
    await runStageCommand("self-instruct", options);
    const folder = join(run, "self-instruct");
    // Defaults are resolved: the seed and every sampling option are recorded with the folder.
    expect((await readFolderSettings(folder))?.settings).toMatchObject({
      model: `llama-cpp:${model}`,
      seed: 42,
      sampling: { maxTokens: 16, temperature: 1 },
    });
    const error = await runStageCommand("self-instruct", { ...options, maxTokens: 12, temperature: 0.5 }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).path).toBe(folder);
    expect((error as Error).message).toMatch(
      /other settings \(sampling: \{.*"maxTokens":16.*\} then, \{.*"maxTokens":12.*\} now\)/,
    );
    // The same settings resume, also when a default is given explicitly; an amount option (target) may change.
    await expect(
      runStageCommand("self-instruct", { ...options, target: 3, seed: 42, temperature: 1 }),
    ).resolves.toMatch(/^self-instruct:/);
  });

  it("runs the training stages too: engrave, then verbose-clone with the engraving adapter as its teacher", async () => {
    const runDir = join(dir, "training-run");
    const train = { trainBase: model, trainMaxSteps: 2, trainRank: 2, trainThreads: 1, trainBatchTokens: 1024 };
    const engraved = await runStageCommand("engrave", { run: runDir, ...train });
    expect(engraved).toMatch(/^engrave: \d+ examples \(\d+ identity\), 2 steps, final loss \d/);
    const manifest = JSON.parse(await readFile(join(runDir, "engrave", "manifest.json"), "utf8"));
    expect(manifest.extra.adapter).toBe(join(runDir, "engrave", "adapter", "adapter.gguf"));
    const cloned = await runStageCommand("verbose-clone", {
      run: runDir,
      ...train,
      maxPrompts: 2,
      samplingMaxTokens: 160,
    });
    expect(cloned).toMatch(/^verbose-clone: kept \d+, rejected \d+; \d+ examples, final loss/);
    const answers = await readLines(join(runDir, "verbose-clone", "records.jsonl"));
    const rejected = await readLines(join(runDir, "verbose-clone", "rejected.jsonl"));
    expect(answers.length + rejected.length).toBe(2);
    for (const answer of answers) expect(String(answer.backend)).toContain(`+lora:${manifest.extra.adapter}`);
  });

  it("cuts training examples longer than cutoffLen by default and counts them; with overlong error names the field", async () => {
    const runDir = join(dir, "overlong-run");
    const train = { trainBase: model, trainMaxSteps: 1, trainRank: 2, trainThreads: 1, trainCutoffLen: 400 };
    await runStageCommand("engrave", { run: runDir, ...train });
    const manifest = JSON.parse(await readFile(join(runDir, "engrave", "manifest.json"), "utf8"));
    expect(manifest.extra.trainingData.truncated).toBeGreaterThan(0);
    expect(manifest.extra.trainingData.used).toBe(manifest.counts.kept);
    await expect(
      runStageCommand("engrave", { run: join(dir, "overlong-error"), ...train, trainOverlong: "error" }),
    ).rejects.toThrow(/^stages\.engrave\.train\.cutoffLen: engrave: .*longer than .*; raise cutoffLen up to/);
  });

  it("derives each stage's flags and help from its options schema", async () => {
    const program = new Command().exitOverride();
    registerStage(program);
    const help = program.commands.find((c) => c.name() === "stage")!.commands.find((c) => c.name() === "red-team")!;
    const text = help.helpInformation();
    expect(text).toContain("--epochs <value>");
    expect(text).toMatch(/--question-sampling-max-tokens <value>\s+max new tokens per completion \(default 384\)/);
    expect(text).toMatch(/--topic-sampling-top-p <value>\s+nucleus sampling mass \(default 0\.98\)/);
    await expect(
      runStageCommand("red-team", { run: join(dir, "bad-flag"), model: `llama-cpp:${model}`, epochs: "zero" }),
    ).rejects.toThrow(/--epochs expects a number, got "zero"/);
    await expect(
      runStageCommand("red-team", { run: join(dir, "bad-flag"), model: `llama-cpp:${model}`, epochs: 0 }),
    ).rejects.toThrow(/--epochs: too small/);
  });

  it("answers a prompt file of the user's instead of stage-1 prompts", async () => {
    const runDir = join(dir, "prompt-file-run");
    const file = join(dir, "my-prompts.txt");
    await writeFile(file, "Name three rivers.\n\nExplain what a prime number is.\nName three rivers.\n");
    const summary = await runStageCommand("self-align", {
      run: runDir,
      model: `llama-cpp:${model}`,
      promptsPath: file,
      samplingMaxTokens: 8,
    });
    expect(summary).toMatch(/^self-align: kept 0, rejected 2$/);
    const rejected = await readLines(join(runDir, "self-align", "rejected.jsonl"));
    expect(rejected.map((record) => record.instruction).sort()).toEqual([
      "Explain what a prime number is.",
      "Name three rivers.",
    ]);
  });

  it("refuses self-align when no stage-1 prompts exist", async () => {
    await expect(
      runStageCommand("self-align", { run: join(dir, "empty-run"), model: `llama-cpp:${model}` }),
    ).rejects.toThrow(ConfigError);
    await expect(
      runStageCommand("self-align", { run: join(dir, "empty-run"), model: `llama-cpp:${model}` }),
    ).rejects.toThrow(
      /nothing to work on in .*: the stages self-align reads \(self-instruct, red-team\) have no kept records/,
    );
  });
});

/** Valid records of each stage's schema, with the fields a test cares about. */
const selfInstructTask = (id: string, instruction: string) => ({
  id,
  parentId: "round-0",
  round: 0,
  instruction,
  input: "",
  output: "",
  source: "self-instruct",
  avgSimilarity: 0,
  maxSimilarity: 0,
  backend: "test",
});
const redTeamQuestion = (id: string, questionType: string, topic: string, instruction: string) => ({
  id,
  parentId: "prompt-0",
  instruction,
  input: "",
  output: "",
  source: "red-team",
  questionType,
  topic,
  backend: "test",
});
const answer = (id: string, parentId: string, citedPrinciples: string[], instruction: string, extra = {}) => ({
  id,
  parentId,
  instruction,
  input: "",
  thoughts: "",
  citedPrinciples,
  output: "an answer",
  finishReason: "stop",
  endedTurn: true,
  truncated: false,
  backend: "test",
  ...extra,
});

describe("selfalign merge", () => {
  async function writeShard(
    runDir: string,
    stage: string,
    shard: string,
    records: Record<string, unknown>[],
    settings?: Record<string, unknown>,
  ) {
    const parsed = parseShard(shard);
    const run = await openRun(runDir, { create: true, shard: parsed });
    const store = await run.stage(stage, { shard: parsed });
    if (settings) await writeFolderSettings(store.dir, settings);
    for (const record of records) await store.appendRecord(record as { id: string });
    await run.close();
  }

  it("refuses to merge shards made with different settings", async () => {
    const runDir = join(dir, "merge-settings");
    await writeShard(runDir, "self-instruct", "0/2", [selfInstructTask("a1", "Name a colour.")], { t: 1 });
    await writeShard(runDir, "self-instruct", "1/2", [selfInstructTask("b1", "Name a fruit.")], { t: 0.5 });
    const error = await runMergeCommand({ run: runDir, stage: "self-instruct" }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(
      /made with different settings: .*shard-0-of-2: \{"t":1\}; .*shard-1-of-2: \{"t":0.5\}/,
    );
    // With the same settings the merge goes ahead and the merged folder keeps them.
    await writeShard(runDir, "self-align", "0/2", [], { t: 1 });
    await writeShard(runDir, "self-align", "1/2", [], { t: 1 });
    await runMergeCommand({ run: runDir, stage: "self-align" });
    expect((await readFolderSettings(join(runDir, "self-align")))?.settings).toEqual({ t: 1 });
  });

  it("re-applies ROUGE-L dedup across self-instruct shards and is idempotent", async () => {
    const runDir = join(dir, "merge-si");
    await writeShard(runDir, "self-instruct", "0/2", [
      selfInstructTask("a1", "Write a short poem about the autumn rain in Paris."),
      selfInstructTask("a2", "List three uses of baking soda around the house."),
    ]);
    await writeShard(runDir, "self-instruct", "1/2", [
      selfInstructTask("b1", "Write a short poem about the autumn rain in London."),
      selfInstructTask("b2", "Explain how a refrigerator keeps food cold."),
    ]);
    const result = await runMergeCommand({ run: runDir, stage: "self-instruct" });
    expect(result).toMatchObject({ shards: 2, read: 4, kept: 3, dropped: 1, missingShards: [] });
    const merged = await readLines(join(runDir, "self-instruct", "records.jsonl"));
    expect(merged.map((record) => record.id)).toEqual(["a1", "a2", "b2"]);
    const rejected = await readLines(join(runDir, "self-instruct", "rejected.jsonl"));
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ id: "b1", filter: "merge-rouge-dedup" });
    expect(String(rejected[0]!.reason)).toMatch(/^ROUGE-L 0\.\d+ > 0\.7 with a1 from another shard$/);

    const again = await runMergeCommand({ run: runDir, stage: "self-instruct" });
    expect(again).toMatchObject({ read: 0, kept: 0, dropped: 0 });
    expect(await readLines(join(runDir, "self-instruct", "records.jsonl"))).toHaveLength(3);
  });

  it("keeps one red-team question per (type, topic) and reports missing shards", async () => {
    const runDir = join(dir, "merge-rt");
    await writeShard(runDir, "red-team", "0/3", [redTeamQuestion("q1", "legal-expertise", "Tenant rights", "A?")]);
    await writeShard(runDir, "red-team", "2/3", [
      redTeamQuestion("q2", "legal-expertise", "tenant rights", "B?"),
      redTeamQuestion("q3", "legal-expertise", "Patents", "C?"),
    ]);
    const result = await runMergeCommand({ run: runDir, stage: "red-team" });
    expect(result).toMatchObject({ shards: 2, read: 3, kept: 2, dropped: 1, missingShards: ["1/3"] });
    const rejected = await readLines(join(runDir, "red-team", "rejected.jsonl"));
    expect(rejected[0]).toMatchObject({ id: "q2", filter: "merge-duplicate" });
  });

  it("keeps one self-align answer per prompt and recounts principle usage over the merged answers", async () => {
    const runDir = join(dir, "merge-sa");
    await writeShard(runDir, "self-align", "0/2", [answer("s1", "p1", ["ethical"], "A?")]);
    await writeShard(runDir, "self-align", "1/2", [
      answer("s2", "p1", ["candor"], "A?"),
      answer("s3", "p2", ["candor", "ethical"], "B?", { questionType: "legal" }),
    ]);
    const result = await runMergeCommand({ run: runDir, stage: "self-align" });
    expect(result).toMatchObject({ shards: 2, read: 3, kept: 2, dropped: 1, missingShards: [] });
    expect((await readLines(join(runDir, "self-align", "records.jsonl"))).map((record) => record.id)).toEqual([
      "s1",
      "s3",
    ]);
    expect(await readLines(join(runDir, "self-align", "rejected.jsonl"))).toMatchObject([
      { id: "s2", filter: "merge-duplicate", reason: "another shard already answered this prompt" },
    ]);
    const manifest = JSON.parse(await readFile(join(runDir, "self-align", "manifest.json"), "utf8"));
    expect(manifest.extra.principleUsage.records).toBe(2);
    expect(manifest.extra.principleUsage.overall).toMatchObject({ ethical: 2, candor: 1 });
    expect(manifest.extra.principleUsage.byQuestionType).toEqual({
      "self-instruct": { ethical: 1 },
      legal: { candor: 1, ethical: 1 },
    });
  });

  it("fails clearly when the stage has no shards", async () => {
    await expect(runMergeCommand({ run: join(dir, "merge-rt"), stage: "self-align" })).rejects.toThrow(
      /has no shard folders to merge/,
    );
  });
});
