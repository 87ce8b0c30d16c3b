/**
 * Seed tasks and red-team seeds in the field's formats: each importer yields exactly the records of the same list
 * written in our YAML (so the hash and the annotation count agree), and bad rows are located by file, line and field.
 */
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { writeParquetRows } from "../data/write-parquet.js";
import { ConfigError } from "../errors/index.js";
import { checkConstitution } from "./check-constitution.js";
import { constitutionStats } from "./constitution-stats.js";
import { defaultConstitutionDir } from "./default-constitution-dir.js";
import { importSeedList, loadConstitution, readConstitution } from "./load-constitution.js";
import { kebabIdOf, seedListYaml } from "./seed-files.js";

const made: string[] = [];
afterEach(async () => {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A copy of the default constitution with some files replaced (name -> text); returns the folder. */
async function constitutionWith(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-seed-files-"));
  made.push(dir);
  await cp(defaultConstitutionDir(), dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, ".."), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

const jsonl = (rows: unknown[]) => rows.map((row) => JSON.stringify(row)).join("\n") + "\n";

// Our own small seed set: with and without input, an output, a classification task, a multi-line input.
const tasksYaml = `tasks:
  - id: task-001
    instruction: Suggest a name for a shop that repairs old bicycles.
  - id: task-002
    instruction: Turn the list below into one sentence.
    input: |-
      eggs
      flour
      milk
    output: Buy eggs, flour and milk.
  - id: task-003
    instruction: Is this message spam or not spam?
    input: You have won a free cruise, reply now to claim it.
    output: spam
    isClassification: true
  - id: task-004
    instruction: Give two reasons to learn a second language.
`;
const selfInstructRows = [
  {
    id: "task_001",
    name: "shop_name",
    instruction: "Suggest a name for a shop that repairs old bicycles.",
    instances: [{ input: "", output: "" }],
    is_classification: false,
  },
  {
    id: "task_002",
    name: "list_to_sentence",
    instruction: "Turn the list below into one sentence.",
    instances: [{ input: "eggs\nflour\nmilk", output: "Buy eggs, flour and milk." }],
    is_classification: false,
  },
  {
    id: "task_003",
    name: "spam_or_not",
    instruction: "Is this message spam or not spam?",
    instances: [{ input: "You have won a free cruise, reply now to claim it.", output: "spam" }],
    is_classification: true,
  },
  {
    id: "task_004",
    name: "language_reasons",
    instruction: "Give two reasons to learn a second language.",
    instances: [{ input: "", output: "" }],
    is_classification: false,
  },
];
const plainRows = selfInstructRows.map(({ instruction, instances, is_classification }) => ({
  instruction,
  input: instances[0]!.input,
  output: instances[0]!.output,
  ...(is_classification ? { is_classification } : {}),
}));

const redTeamYaml = `types:
  - id: cultural-context
    label: Questions that require cultural context
    seedTopic: Wedding customs
    seedQuestion: Why do guests throw rice at some weddings?
  - id: knowledge-of-future-events
    label: Questions that require knowledge of future events
    seedTopic: Space travel
    seedQuestion: Who will be the first person to walk on Mars?
  - id: legal-expertise
    label: Questions that require legal expertise
    seedTopic: Tenancy
    seedQuestion: Can my landlord keep my deposit for normal wear and tear?
`;
const redTeamRows = [
  {
    topic: "Wedding customs",
    question_type: "Questions that require cultural context",
    question: "Why do guests throw rice at some weddings?",
  },
  {
    topic: "Space travel",
    question_type: "Questions that require knowledge of future events",
    question: "Who will be the first person to walk on Mars?",
  },
  {
    topic: "Tenancy",
    question_type: "Questions that require legal expertise",
    question: "Can my landlord keep my deposit for normal wear and tear?",
  },
];

async function loadError(dir: string): Promise<ConfigError> {
  const error = await loadConstitution(dir).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

describe("seed tasks from the field's formats", () => {
  it("every format loads to the records of the same tasks in our YAML, with the same hash and annotation count", async () => {
    const ours = await loadConstitution(await constitutionWith({ "seed-tasks.yaml": tasksYaml }));
    expect(ours.seedTasks).toHaveLength(4);
    const variants: Record<string, Record<string, string>> = {
      "Self-Instruct JSONL": {
        "seed-tasks.yaml": "tasks: ./seed_tasks.jsonl\n",
        "seed_tasks.jsonl": jsonl(selfInstructRows),
      },
      "Alpaca JSON array": {
        "seed-tasks.yaml": "tasks: data/seeds.json\n",
        "data/seeds.json": JSON.stringify(plainRows, null, 2),
      },
      "Alpaca JSONL": { "seed-tasks.yaml": "tasks: ./seeds.jsonl\n", "seeds.jsonl": jsonl(plainRows) },
      "Alpaca Parquet": { "seed-tasks.yaml": "tasks: ./train.parquet\n" },
      "our YAML in a file of its own": {
        "seed-tasks.yaml": "# shared with another project\ntasks: ./shared/seed-tasks.yaml\n",
        "shared/seed-tasks.yaml": tasksYaml,
      },
    };
    for (const [format, files] of Object.entries(variants)) {
      const dir = await constitutionWith(files);
      if (format === "Alpaca Parquet") await writeParquetRows(join(dir, "train.parquet"), plainRows);
      const loaded = await loadConstitution(dir);
      expect(loaded.seedTasks, format).toEqual(ours.seedTasks);
      expect(loaded.hash, format).toBe(ours.hash);
      expect(constitutionStats(loaded), format).toEqual(constitutionStats(ours));
    }
    // One annotation line per seed task, as for our YAML.
    expect(constitutionStats(ours).annotationLines.seedTasks).toBe(4);
  });

  it("the named file's content is part of the constitution hash", async () => {
    const first = await loadConstitution(
      await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(selfInstructRows) }),
    );
    const edited = selfInstructRows.map((row, index) =>
      index === 2 ? { ...row, instances: [{ input: "Lunch is at noon.", output: "not spam" }] } : row,
    );
    const second = await loadConstitution(
      await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(edited) }),
    );
    expect(second.seedTasks[2]).toMatchObject({ input: "Lunch is at noon.", output: "not spam" });
    expect(second.hash).not.toBe(first.hash);
  });

  it("import-seeds' YAML reads back to the same records", async () => {
    const dir = await constitutionWith({ "seeds.jsonl": jsonl(selfInstructRows) });
    const { items, warnings } = await importSeedList("seedTasks", join(dir, "seeds.jsonl"));
    expect(warnings).toEqual([]);
    const text = seedListYaml("seedTasks", items, "seeds.jsonl");
    expect(
      text.startsWith('# 4 seed tasks imported from seeds.jsonl by "selfalign constitution import-seeds".\n'),
    ).toBe(true);
    // Defaults are not written: only the classification task says isClassification.
    expect(text.match(/isClassification/g)).toHaveLength(1);
    const reloaded = await loadConstitution(await constitutionWith({ "seed-tasks.yaml": text }));
    const ours = await loadConstitution(await constitutionWith({ "seed-tasks.yaml": tasksYaml }));
    expect(reloaded.seedTasks).toEqual(ours.seedTasks);
  });

  it("uses the first instance only, and says so", async () => {
    const rows = selfInstructRows.map((row, index) =>
      index === 1 ? { ...row, instances: [...row.instances, { input: "bread", output: "Buy bread." }] } : row,
    );
    const dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(rows) });
    const read = await readConstitution(dir);
    expect(read.constitution?.seedTasks[1]).toMatchObject({ input: "eggs\nflour\nmilk" });
    expect(read.issues).toEqual([
      expect.objectContaining({ severity: "warning", file: join(dir, "s.jsonl"), line: 2, field: "instances" }),
    ]);
  });

  it("names file, line and field (as written there) of a bad row", async () => {
    const rows: unknown[] = [...selfInstructRows];
    rows[2] = { ...selfInstructRows[2], instruction: undefined };
    let dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(rows) });
    let error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "s.jsonl"), line: 3, field: "instruction" });
    expect(error.message).toContain('missing required field "instruction"');

    // Our schema's rules (non-empty texts) are reported at the field the file wrote: instances[0].output.
    rows[2] = { ...selfInstructRows[2], instances: [{ input: "Hello", output: 7 }] };
    dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(rows) });
    error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "s.jsonl"), line: 3, field: "instances[0].output" });

    rows[2] = { ...selfInstructRows[2], instruction: "   " };
    dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(rows) });
    error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "s.jsonl"), line: 3, field: "instruction" });
    expect(error.message).toContain("non-empty text");

    // A JSON array: the line the row's field is on, and its index.
    const plain: unknown[] = [...plainRows];
    plain[1] = { ...plainRows[1], input: ["eggs"] };
    dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.json\n", "s.json": JSON.stringify(plain, null, 2) });
    error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "s.json"), line: 9, field: "[1].input" });

    // A row that is not an object, and a line that is not JSON.
    dir = await constitutionWith({
      "seed-tasks.yaml": "tasks: ./s.jsonl\n",
      "s.jsonl": `${jsonl(rows.slice(0, 2))}[1]\n`,
    });
    expect(await loadError(dir)).toMatchObject({ path: join(dir, "s.jsonl"), line: 3 });
    dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": `{"instruction": "x"\n{}\n` });
    error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "s.jsonl"), line: 1 });
    expect(error.message).toContain("not valid JSON");
  });

  it("names the YAML line when the named file is missing, and refuses a file that names another", async () => {
    let dir = await constitutionWith({ "seed-tasks.yaml": "# seeds\ntasks: ./nowhere.jsonl\n" });
    let error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "seed-tasks.yaml"), line: 2, field: "tasks" });
    expect(error.message).toContain("nowhere.jsonl, which does not exist");

    dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./a.yaml\n", "a.yaml": "tasks: ./b.jsonl\n" });
    error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "a.yaml"), line: 1, field: "tasks" });

    dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\nextra: 1\n", "s.jsonl": jsonl(plainRows) });
    expect(await loadError(dir)).toMatchObject({ path: join(dir, "seed-tasks.yaml"), line: 2, field: "extra" });
  });

  it("checks on the loaded tasks point into the named file", async () => {
    const rows = [...selfInstructRows, { ...selfInstructRows[3]!, id: "task_005" }];
    const dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(rows) });
    const constitution = await loadConstitution(dir);
    const nearDuplicate = checkConstitution(constitution).find((issue) => issue.message.includes("near-duplicate"));
    expect(nearDuplicate).toMatchObject({ file: join(dir, "s.jsonl"), line: 5, field: "instruction" });
  });

  it("names a checked field the way the named file spells it", async () => {
    const rows = selfInstructRows.map((row, index) =>
      index === 1 ? { ...row, instances: [{ input: "eggs, {flour}", output: "" }] } : row,
    );
    const dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(rows) });
    const placeholder = checkConstitution(await loadConstitution(dir)).find((issue) =>
      issue.message.includes("{flour}"),
    );
    expect(placeholder).toMatchObject({ file: join(dir, "s.jsonl"), line: 2, field: "instances[0].input" });
  });

  it("reports ids that clash after normalising", async () => {
    const rows = [...selfInstructRows, { ...selfInstructRows[0]!, id: "Task-001", instruction: "Name a river." }];
    const dir = await constitutionWith({ "seed-tasks.yaml": "tasks: ./s.jsonl\n", "s.jsonl": jsonl(rows) });
    expect(await loadError(dir)).toMatchObject({ path: join(dir, "s.jsonl"), line: 5, field: "id" });
    await expect(importSeedList("seedTasks", join(dir, "s.jsonl"))).rejects.toMatchObject({ line: 5, field: "id" });
    expect(kebabIdOf("seed_task_0")).toBe("seed-task-0");
  });
});

describe("red-team seed questions from {topic, question_type, question} rows", () => {
  it("JSONL and JSON load to the types of our YAML; import-seeds' YAML reads back the same", async () => {
    const ours = await loadConstitution(await constitutionWith({ "red-team.yaml": redTeamYaml }));
    const variants: Array<Record<string, string>> = [
      { "red-team.yaml": "types: ./questions.jsonl\n", "questions.jsonl": jsonl(redTeamRows) },
      { "red-team.yaml": "types: ./questions.json\n", "questions.json": JSON.stringify(redTeamRows) },
    ];
    for (const files of variants) {
      const loaded = await loadConstitution(await constitutionWith(files));
      expect(loaded.redTeamTypes).toEqual(ours.redTeamTypes);
      expect(loaded.hash).toBe(ours.hash);
      expect(constitutionStats(loaded).annotationLines.redTeamQuestions).toBe(3);
    }
    const dir = await constitutionWith({ "q.jsonl": jsonl(redTeamRows) });
    const { items } = await importSeedList("redTeam", join(dir, "q.jsonl"));
    const text = seedListYaml("redTeam", items, "q.jsonl");
    const reloaded = await loadConstitution(await constitutionWith({ "red-team.yaml": text }));
    expect(reloaded.redTeamTypes).toEqual(ours.redTeamTypes);
  });

  it("locates a missing question and a repeated question type", async () => {
    const rows: unknown[] = [...redTeamRows];
    rows[1] = { topic: "Space travel", question_type: "Questions that require knowledge of future events" };
    let dir = await constitutionWith({ "red-team.yaml": "types: ./q.jsonl\n", "q.jsonl": jsonl(rows) });
    let error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "q.jsonl"), line: 2, field: "question" });

    // Valid JSON of the right type, but not a text our schema accepts: named as the file names it.
    rows[1] = { ...redTeamRows[1], topic: "  " };
    dir = await constitutionWith({ "red-team.yaml": "types: ./q.jsonl\n", "q.jsonl": jsonl(rows) });
    error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "q.jsonl"), line: 2, field: "topic" });

    const repeated = [...redTeamRows, { ...redTeamRows[0]!, topic: "Tea ceremonies" }];
    dir = await constitutionWith({ "red-team.yaml": "types: ./q.jsonl\n", "q.jsonl": jsonl(repeated) });
    error = await loadError(dir);
    expect(error).toMatchObject({ path: join(dir, "q.jsonl"), line: 4, field: "question_type" });
    expect(error.message).toContain('duplicate id "cultural-context"');
  });
});
