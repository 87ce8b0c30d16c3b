import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { constitutionStats, defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { isheepAnnotationLines } from "../../stages/isheep/prompt.js";
import { parsePipelineConfig } from "../../pipeline/pipeline-config.js";

// The commands run in a real `node` process, registered and run exactly as cli.ts does, but without the
// other commands, so these tests depend only on the code they test.
const here = fileURLToPath(new URL(".", import.meta.url));
let work: string;
let entry: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "selfalign-cli-constitution-"));
  entry = join(work, "cli-entry.mjs");
  const url = (path: string) => JSON.stringify(pathToFileURL(path).href);
  const commander = createRequire(import.meta.url).resolve("commander");
  await writeFile(
    entry,
    [
      `import { Command } from ${url(commander)};`,
      `import { registerConstitution } from ${url(join(here, "constitution.ts"))};`,
      `import { registerInit } from ${url(join(here, "init.ts"))};`,
      `import { runMain } from ${url(join(here, "..", "run-main.ts"))};`,
      `const program = new Command().name("selfalign");`,
      "registerInit(program);",
      "registerConstitution(program);",
      "await runMain(() => program.parseAsync(process.argv));",
    ].join("\n"),
  );
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function selfalign(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", entry, ...args],
      { cwd: join(here, "..", "..", "..") },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

describe("selfalign constitution", () => {
  it("stats prints the counts table and the annotation total of the default constitution", async () => {
    const stats = constitutionStats(await loadConstitution(defaultConstitutionDir()));
    const result = await selfalign("constitution", "stats");
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ {2}principles +16$/m);
    expect(result.stdout).toMatch(/^ {2}red-team types +20$/m);
    const { total: tasks, withInput, classification } = stats.seedTasks;
    expect(result.stdout).toMatch(
      new RegExp(
        `^ {2}seed tasks +${tasks} {2}\\(${withInput} with input, .* ${classification} classification\\)$`,
        "m",
      ),
    );
    const total = Number(/^ {2}total +(\d+)$/m.exec(result.stdout)?.[1]);
    expect(total).toBe(stats.annotationLines.total);
    expect(total).toBeLessThan(300);
    // Per method: SELF-ALIGN's total first, SALMON's second, I-SHEEP's third, then all three.
    const totals = [...result.stdout.matchAll(/^ {2}total +(\d+)$/gm)].map((match) => Number(match[1]));
    const isheep = isheepAnnotationLines();
    // I-SHEEP's rating scales: a low and a high end for each of its two aspects.
    expect(isheep).toEqual({ ratingScales: 4, total: 4 });
    expect(totals).toEqual([stats.annotationLines.total, stats.annotationLines.salmon.total, isheep.total]);
    expect(stats.annotationLines.salmon.total).toBeGreaterThan(0);
    const all = stats.annotationLines.allMethods + isheep.total;
    expect(all).toBe(totals.reduce((a, b) => a + b, 0));
    expect(result.stdout).toMatch(
      new RegExp(
        `^ {2}all methods +${all} {2}\\(SELF-ALIGN ${totals[0]} \\+ SALMON ${totals[1]} \\+ I-SHEEP ${totals[2]}; ${all < 300 ? "under" : "not under"} 300\\)$`,
        "m",
      ),
    );

    const json = await selfalign("constitution", "stats", defaultConstitutionDir(), "--json");
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      principles: 16,
      annotationLines: { total, isheep, allMethods: all },
    });
  });

  it("check passes on the default constitution and fails, listing every error, on a broken one", async () => {
    const ok = await selfalign("constitution", "check");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^ok: .*default has no problems$/m);

    const broken = join(work, "broken");
    await cp(defaultConstitutionDir(), broken, { recursive: true });
    const exemplars = join(broken, "exemplars.yaml");
    const text = (await readFile(exemplars, "utf8")).replace("cites: [helpful, creative]", "cites: [helpful, poetic]");
    await writeFile(exemplars, text);
    await writeFile(join(broken, "red-team.yaml"), "types:\n  - id: a\n    label: Questions that require a\n");
    const result = await selfalign("constitution", "check", broken);
    expect(result.code).toBe(1);
    const line = text.split("\n").findIndex((l) => l.includes("poetic")) + 1;
    expect(result.stdout).toContain(
      `error: ${exemplars}, line ${line}, exemplars[4].turns[0].cites[1]: unknown principle id "poetic"`,
    );
    expect(result.stdout).toContain(
      `error: ${join(broken, "red-team.yaml")}, line 2, types[0].seedQuestion: missing required field`,
    );
    expect(result.stdout).toMatch(/^failed: 3 errors, 0 warnings in /m);

    // stats refuses an invalid constitution with one clear message and no stack trace.
    const stats = await selfalign("constitution", "stats", broken);
    expect(stats.code).toBe(1);
    expect(stats.stdout).toBe("");
    expect(stats.stderr).toMatch(
      /^selfalign: .*exemplars\.yaml, line \d+, exemplars\[4\].*\(and 2 more problems; run "selfalign constitution check /,
    );
    expect(stats.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("selfalign constitution import-seeds", () => {
  it("converts a Self-Instruct seed file to our YAML, and red-team seeds with --red-team", async () => {
    const seeds = join(work, "seed_tasks.jsonl");
    const rows = [
      { id: "seed_task_0", name: "a", instruction: "Name a fruit.", instances: [{ input: "", output: "Apple." }] },
      {
        id: "seed_task_1",
        name: "b",
        instruction: "Is this sentence a question?",
        instances: [{ input: "Where is the station?", output: "Yes" }],
        is_classification: true,
      },
    ];
    await writeFile(seeds, rows.map((row) => JSON.stringify(row)).join("\n"));
    const printed = await selfalign("constitution", "import-seeds", seeds);
    expect(printed.stderr).toBe("");
    expect(printed.code).toBe(0);
    expect(parse(printed.stdout)).toEqual({
      tasks: [
        { id: "seed-task-0", instruction: "Name a fruit.", output: "Apple." },
        {
          id: "seed-task-1",
          instruction: "Is this sentence a question?",
          input: "Where is the station?",
          output: "Yes",
          isClassification: true,
        },
      ],
    });

    // Into a constitution folder: it loads, and stats counts the two tasks.
    const folder = join(work, "imported");
    await cp(defaultConstitutionDir(), folder, { recursive: true });
    const out = join(folder, "seed-tasks.yaml");
    const refused = await selfalign("constitution", "import-seeds", seeds, "--out", out);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`selfalign: ${out}: exists; choose another --out file, or pass --force`);
    const written = await selfalign("constitution", "import-seeds", seeds, "--out", out, "--force");
    expect(written.stdout).toBe(`wrote 2 seed tasks to ${out}\n`);
    expect((await loadConstitution(folder)).seedTasks.map((task) => task.id)).toEqual(["seed-task-0", "seed-task-1"]);
    const stats = await selfalign("constitution", "stats", folder, "--json");
    expect(JSON.parse(stats.stdout).annotationLines.seedTasks).toBe(2);

    const questions = join(work, "questions.jsonl");
    await writeFile(
      questions,
      `${JSON.stringify({ topic: "Chess", question_type: "Questions that require personal preference", question: "Which opening do you like best?" })}\n`,
    );
    const redTeam = await selfalign("constitution", "import-seeds", questions, "--red-team");
    expect(parse(redTeam.stdout)).toEqual({
      types: [
        {
          id: "personal-preference",
          label: "Questions that require personal preference",
          seedTopic: "Chess",
          seedQuestion: "Which opening do you like best?",
        },
      ],
    });
  });

  it("names file, line and field of a bad row, and writes nothing", async () => {
    const seeds = join(work, "bad_seeds.jsonl");
    await writeFile(seeds, '{"instruction": "Name a fruit."}\n{"instruction": "Name a tree.", "instances": {}}\n');
    const out = join(work, "never.yaml");
    const result = await selfalign("constitution", "import-seeds", seeds, "--out", out);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(`^selfalign: ${seeds.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, line 2, instances: `),
    );
    expect(result.stderr).not.toMatch(/\n\s+at /);
    await expect(stat(out)).rejects.toThrow();
  });
});

describe("selfalign init", () => {
  it("creates a starter config and an editable copy of the default constitution", async () => {
    const project = join(work, "My Project");
    const result = await selfalign("init", project);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const config = parse(await readFile(join(project, "selfalign.yaml"), "utf8"));
    expect(config).toMatchObject({
      name: "my-project",
      model: "./models/base.gguf",
      constitution: "./constitution",
    });
    expect(Object.keys(config.stages)).toEqual(["self-instruct", "red-team", "self-align", "engrave", "verbose-clone"]);
    // The starter config is one 'selfalign run' accepts.
    expect(parsePipelineConfig(config, "selfalign.yaml").stages["self-instruct"]?.target).toBe(300);
    const copy = await loadConstitution(join(project, "constitution"));
    expect(copy.hash).toBe((await loadConstitution(defaultConstitutionDir())).hash);
  });

  it("refuses a non-empty folder unless --force, and then keeps unrelated files", async () => {
    const project = join(work, "busy");
    await mkdir(project);
    await writeFile(join(project, "notes.txt"), "mine");
    const refused = await selfalign("init", project);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `selfalign: ${project} is not empty (1 entry); choose a new folder, or pass --force`,
    );
    await expect(stat(join(project, "selfalign.yaml"))).rejects.toThrow();

    await mkdir(join(project, "constitution"));
    await writeFile(join(project, "constitution", "principles.yaml"), "principles: []\n");
    const forced = await selfalign("init", project, "--force");
    expect(forced.code).toBe(0);
    expect(await readFile(join(project, "notes.txt"), "utf8")).toBe("mine");
    expect((await loadConstitution(join(project, "constitution"))).principles).toHaveLength(16);
  });
});
