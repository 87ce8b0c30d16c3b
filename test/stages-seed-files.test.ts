/**
 * Bring-your-own seed data end to end on a tiny random-weight GGUF: a constitution whose seed-tasks.yaml names a
 * Self-Instruct-format JSONL runs stage 1 (its seeds are the demos and the dedup pool), `selfalign stage
 * self-instruct --constitution` runs on it and records its hash, and `selfalign export` writes the kept records as
 * Parquet that hyparquet reads back row for row.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRecordsFile, withRun } from "./fixtures/stage-files.js";
import { startTinyEngine, type TinyEngine } from "./fixtures/tiny-engine.js";
import { registerExport } from "../src/cli/commands/export.js";
import { runStageCommand } from "../src/cli/commands/stage.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { ConfigError } from "../src/errors/index.js";
import { runSelfInstruct } from "../src/stages/self-instruct/run.js";

// Our own seed tasks in the Self-Instruct seed format (one JSON object per line).
const seedRows = [
  ["seed_task_0", "Describe the rivers of Peru in four sentences.", ""],
  ["seed_task_1", "List five fruits that grow on trees.", ""],
  ["seed_task_2", "Rewrite this sentence so that it sounds more polite.", "Give me the salt."],
  ["seed_task_3", "Explain how a bicycle gear works to a child.", ""],
  ["seed_task_4", "Suggest a title for a story about a lost cat.", ""],
  ["seed_task_5", "Summarise the main idea of the paragraph.", "Bees visit flowers to collect nectar and pollen."],
].map(([id, instruction, input]) => ({
  id,
  name: id!.replace("seed_task", "task"),
  instruction,
  instances: [{ input, output: "" }],
  is_classification: false,
}));

// Item 1 repeats a seed word for word (the dedup pool must hold it); item 2 is new, picked by the model.
const grammar = `root ::= " Describe the rivers of Peru in four sentences.\\n4. Input:\\n<noinput>\\n###\\n5. Instruction: " body "\\n5. Input:\\n<noinput>\\n###\\n"
body ::= verb " the " w " and the " w " today."
verb ::= "Write about" | "Explain" | "Compare"
w ::= "tea" | "maps" | "laws" | "owls" | "snow"`;

let engine: TinyEngine;
let constitutionDir: string;
let constitution: Constitution;
let work: string;

beforeAll(async () => {
  engine = await startTinyEngine({ prefix: "selfalign-seed-files-", seed: 11, contextLength: 4096 });
  work = await mkdtemp(join(tmpdir(), "selfalign-seed-runs-"));
  constitutionDir = join(work, "constitution");
  await cp(defaultConstitutionDir(), constitutionDir, { recursive: true });
  await writeFile(join(constitutionDir, "seed-tasks.yaml"), "tasks: ./seed_tasks.jsonl\n");
  await writeFile(join(constitutionDir, "seed_tasks.jsonl"), seedRows.map((row) => JSON.stringify(row)).join("\n"));
  constitution = await loadConstitution(constitutionDir);
});

afterAll(async () => {
  await engine?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("a constitution with Self-Instruct seed JSONL", () => {
  it("runs self-instruct from the file's seeds, and exports the kept records as Parquet", async () => {
    expect(constitution.seedTasks.map((task) => task.id)).toEqual(seedRows.map((row) => row.id!.replace(/_/g, "-")));
    const runDir = join(work, "direct");
    const result = await withRun(runDir, async (run) => {
      await run.writeRunJson({ config: {}, constitutionHash: constitution.hash });
      return runSelfInstruct({
        backend: engine.backend,
        store: await run.stage("self-instruct"),
        constitution,
        target: 100,
        maxRounds: 3,
        demos: 3,
        batchSize: 2,
        sampling: { grammar, maxTokens: 200 },
      });
    });
    expect(result.counts.rounds).toBe(3);
    const records = await readRecordsFile(join(runDir, "self-instruct", "records.jsonl"));
    const rejected = await readRecordsFile(join(runDir, "self-instruct", "rejected.jsonl"));
    expect(records.length).toBeGreaterThan(0);
    // The copied seed is dropped by ROUGE-L dedup against the seed of the JSONL file, named by its id there.
    const copies = rejected.filter((r) => r.instruction === "Describe the rivers of Peru in four sentences.");
    expect(copies).toHaveLength(3);
    for (const copy of copies) expect(copy).toMatchObject({ filter: "rouge-dedup", nearestId: "seed:seed-task-0" });

    // selfalign export: Parquet rows are the records, and the card names the constitution.
    const program = new Command().exitOverride();
    registerExport(program);
    const out = join(work, "dataset");
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(["export", runDir, "--stage", "self-instruct", "--out", out], { from: "user" });
    } finally {
      process.stdout.write = write;
    }
    expect(written.join("")).toBe(
      `wrote ${records.length} records to ${join(out, "records.parquet")}, card ${join(out, "README.md")}\n`,
    );
    const rows = await parquetReadObjects({ file: await asyncBufferFromFile(join(out, "records.parquet")) });
    expect(rows).toEqual(records);
    const card = await readFile(join(out, "README.md"), "utf8");
    expect(card).toContain(`- constitution hash: \`${constitution.hash}\``);
    expect(card).toContain(
      `- made by: \`selfalign export ${runDir} --stage self-instruct --format parquet --out ${out}\``,
    );
    expect(card).toContain(`| self-instruct | records.parquet | ${records.length} |`);

    await expect(program.parseAsync(["export", runDir, "--stage", "self-align"], { from: "user" })).rejects.toThrow(
      /has no stage "self-align"; stages in this run: self-instruct/,
    );
  });

  it("runs through 'selfalign stage self-instruct --constitution' and records that constitution's hash", async () => {
    const runDir = join(work, "cli");
    const summary = await runStageCommand("self-instruct", {
      run: runDir,
      model: `llama-cpp:${join(engine.dir, "tiny.gguf")}`,
      constitution: constitutionDir,
      target: 2,
      maxTokens: 16,
      maxRoundsWithoutProgress: 2,
      batchSize: 1,
    });
    expect(summary).toMatch(/^self-instruct: kept \d+, rejected \d+ after \d+ rounds/);
    const info = JSON.parse(await readFile(join(runDir, "run.json"), "utf8"));
    expect(info.constitutionHash).toBe(constitution.hash);
    expect(info.constitutionHash).not.toBe((await loadConstitution(defaultConstitutionDir())).hash);

    // Editing the seed file changes the constitution: the run refuses to mix records made from other seeds.
    await writeFile(
      join(constitutionDir, "seed_tasks.jsonl"),
      seedRows
        .slice(1)
        .map((row) => JSON.stringify(row))
        .join("\n"),
    );
    const error = await runStageCommand("self-instruct", {
      run: runDir,
      model: `llama-cpp:${join(engine.dir, "tiny.gguf")}`,
      constitution: constitutionDir,
      target: 2,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(`run.json was made with constitution ${constitution.hash}`);
  });
});
