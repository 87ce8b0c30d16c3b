import { stat, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import type { Command } from "commander";
import {
  checkConstitution,
  type ConstitutionIssue,
  type ConstitutionStats,
  constitutionStats,
  defaultConstitutionDir,
  formatConstitutionIssue,
  importSeedList,
  loadConstitution,
  readConstitution,
  seedFileFormats,
  seedListYaml,
} from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import { isheepAnnotationLines } from "../../stages/isheep/prompt.js";

/**
 * `selfalign constitution stats|check [dir]`: count and validate a constitution folder;
 * `selfalign constitution import-seeds <file>`: convert seed tasks or red-team seeds in the field's formats to our YAML.
 */
export function registerConstitution(program: Command): void {
  const constitution = program
    .command("constitution")
    .description("Inspect a constitution: principles, exemplars, red-team types, seed tasks and prompts.");

  constitution
    .command("stats")
    .description("Print the counts of a constitution and its lines of human annotation.")
    .argument("[dir]", "constitution folder (default: the built-in default constitution)")
    .option("--json", "print the counts as JSON", false)
    .action(async (dir: string | undefined, options: { json: boolean }) => {
      const folder = dir ?? defaultConstitutionDir();
      const loaded = await loadConstitution(folder);
      const stats = constitutionStats(loaded);
      const isheep = isheepAnnotationLines();
      if (options.json) {
        const annotationLines = {
          ...stats.annotationLines,
          isheep,
          allMethods: stats.annotationLines.allMethods + isheep.total,
        };
        process.stdout.write(
          `${JSON.stringify({ dir: folder, hash: loaded.hash, ...stats, annotationLines }, null, 2)}\n`,
        );
      } else process.stdout.write(formatStats(folder, loaded.hash, stats, isheep));
    });

  constitution
    .command("check")
    .description("Validate a constitution; prints every problem and exits non-zero when there are errors.")
    .argument("[dir]", "constitution folder (default: the built-in default constitution)")
    .action(async (dir: string | undefined) => {
      const folder = dir ?? defaultConstitutionDir();
      const read = await readConstitution(folder);
      const issues = read.constitution ? [...read.issues, ...checkConstitution(read.constitution)] : read.issues;
      process.stdout.write(formatIssues(folder, issues));
      if (issues.some((issue) => issue.severity === "error")) process.exitCode = 1;
    });

  constitution
    .command("import-seeds")
    .description(
      "Convert seed tasks (Self-Instruct / Alpaca JSONL or JSON) or, with --red-team, red-team seed questions " +
        "({topic, question_type, question} JSONL) into the YAML of seed-tasks.yaml or red-team.yaml. " +
        "(A constitution can also name such a file directly: `tasks: ./seed_tasks.jsonl` in seed-tasks.yaml.)",
    )
    .argument("<file>", `${seedFileFormats.seedTasks}; with --red-team: ${seedFileFormats.redTeam}`)
    .option("--red-team", "the file holds red-team seed questions (writes red-team.yaml's `types:`)", false)
    .option("--out <file>", "write the YAML to this file instead of printing it")
    .option("--force", "overwrite the --out file when it exists", false)
    .action(async (file: string, options: { redTeam: boolean; out?: string; force: boolean }) => {
      const { text, count, warnings } = await importAs(options.redTeam ? "redTeam" : "seedTasks", file);
      for (const warning of warnings) process.stderr.write(`warning: ${formatConstitutionIssue(warning)}\n`);
      if (options.out === undefined) {
        process.stdout.write(text);
        return;
      }
      if (!options.force && (await stat(options.out).catch(() => undefined))) {
        throw new ConfigError("exists; choose another --out file, or pass --force to overwrite it", {
          path: options.out,
        });
      }
      await writeFile(options.out, text, "utf8");
      const what = options.redTeam ? "red-team seed questions" : "seed tasks";
      process.stdout.write(`wrote ${count} ${what} to ${options.out}\n`);
    });
}

async function importAs(key: "seedTasks" | "redTeam", file: string) {
  if (key === "redTeam") {
    const { items, warnings } = await importSeedList("redTeam", file);
    return { text: seedListYaml("redTeam", items, basename(file)), count: items.length, warnings };
  }
  const { items, warnings } = await importSeedList("seedTasks", file);
  return { text: seedListYaml("seedTasks", items, basename(file)), count: items.length, warnings };
}

function formatIssues(dir: string, issues: ConstitutionIssue[]): string {
  const errors = issues.filter((issue) => issue.severity === "error").length;
  const warnings = issues.length - errors;
  const lines = issues.map((issue) => `${issue.severity}: ${formatConstitutionIssue(issue)}`);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  lines.push(
    issues.length === 0
      ? `ok: ${dir} has no problems`
      : `${errors > 0 ? "failed" : "ok"}: ${plural(errors, "error")}, ${plural(warnings, "warning")} in ${dir}`,
  );
  return `${lines.join("\n")}\n`;
}

function formatStats(
  dir: string,
  hash: string,
  stats: ConstitutionStats,
  isheep: ReturnType<typeof isheepAnnotationLines>,
): string {
  const { seedTasks, annotationLines: lines, salmon } = stats;
  const all = lines.allMethods + isheep.total;
  const rows: Array<[string, number, string?]> = [
    ["principles", stats.principles],
    ["exemplars", stats.exemplars, `${stats.exemplarTurns} turns`],
    ["red-team types", stats.redTeamTypes],
    [
      "seed tasks",
      seedTasks.total,
      `${seedTasks.withInput} with input, ${seedTasks.withoutInput} without, ${seedTasks.classification} classification`,
    ],
    ["identity exchanges", stats.identityExchanges],
    ["reward principles", salmon.rewardPrinciples, `SALMON; ${salmon.rewardPrinciplesReused} reuse a rule`],
    ["RL principles", salmon.rlPrinciples, `SALMON; ${salmon.rlPrinciplesReused} reuse a rule`],
    ["interventions", salmon.interventions, "SALMON"],
  ];
  const selfAlign: Array<[string, number]> = [
    ["seed tasks", lines.seedTasks],
    ["red-team questions", lines.redTeamQuestions],
    ["principles", lines.principles],
    ["exemplars", lines.exemplars],
    ["prompts", lines.prompts],
    ["identity", lines.identity],
  ];
  const row = (label: string, count: number, note?: string) =>
    `  ${label.padEnd(22)}${String(count).padStart(5)}${note ? `  (${note})` : ""}`;
  return [
    `constitution ${dir}`,
    `hash         ${hash}`,
    "",
    ...rows.map(([label, count, note]) => row(label, count, note)),
    "",
    "lines of human annotation",
    "SELF-ALIGN",
    ...selfAlign.map(([label, count]) => row(label, count)),
    row("total", lines.total),
    "SALMON",
    row("reward principles", lines.salmon.rewardPrinciples, "own: definition + negative; reused: the negated text"),
    row("RL principles", lines.salmon.rlPrinciples, "own definitions; a reused rule adds none"),
    row("interventions", lines.salmon.interventions),
    row("total", lines.salmon.total),
    "I-SHEEP",
    row("rating scales", isheep.ratingScales, "in its stage code; its seed tasks are SELF-ALIGN's"),
    row("total", isheep.total),
    "",
    row(
      "all methods",
      all,
      `SELF-ALIGN ${lines.total} + SALMON ${lines.salmon.total} + I-SHEEP ${isheep.total}; ${all < 300 ? "under" : "not under"} 300`,
    ),
    `  (${lines.unusedNegatedTexts} negated rule texts are used by no principle and not counted)`,
    "",
  ].join("\n");
}
