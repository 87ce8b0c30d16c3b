import type { Command } from "commander";
import {
  checkConstitution,
  type ConstitutionIssue,
  type ConstitutionStats,
  constitutionStats,
  defaultConstitutionDir,
  formatConstitutionIssue,
  loadConstitution,
  readConstitution,
} from "../../constitution/index.js";

/** `selfalign constitution stats|check [dir]`: count and validate a constitution folder. */
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
      if (options.json)
        process.stdout.write(`${JSON.stringify({ dir: folder, hash: loaded.hash, ...stats }, null, 2)}\n`);
      else process.stdout.write(formatStats(folder, loaded.hash, stats));
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

function formatStats(dir: string, hash: string, stats: ConstitutionStats): string {
  const { seedTasks, annotationLines: lines } = stats;
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
  ];
  const annotation: Array<[string, number]> = [
    ["seed tasks", lines.seedTasks],
    ["red-team questions", lines.redTeamQuestions],
    ["principles", lines.principles],
    ["exemplars", lines.exemplars],
    ["prompts", lines.prompts],
    ["identity", lines.identity],
  ];
  const row = (label: string, count: number, note?: string) =>
    `  ${label.padEnd(20)}${String(count).padStart(5)}${note ? `  (${note})` : ""}`;
  return [
    `constitution ${dir}`,
    `hash         ${hash}`,
    "",
    ...rows.map(([label, count, note]) => row(label, count, note)),
    "",
    "lines of human annotation",
    ...annotation.map(([label, count]) => row(label, count)),
    row("total", lines.total),
    `  (+${lines.negatedPrinciples} negated principle texts, kept for SALMON; no SELF-ALIGN stage reads them)`,
    "",
  ].join("\n");
}
