/**
 * Seed tasks and red-team seed questions in the formats the field distributes them in, read into the lists of our
 * YAML files (`tasks:` of seed-tasks.yaml, `types:` of red-team.yaml):
 * - seed tasks: Self-Instruct / Alpaca seed JSONL (`{id, name, instruction, instances: [{input, output}],
 *   is_classification}`; only the first instance seeds prompts, as in the reference), plain `{instruction, input,
 *   output}` rows, or our own seed-tasks.yaml;
 * - red-team seeds: `{topic, question_type, question}` rows, one per question type, or our own red-team.yaml.
 * Rows may come as JSON Lines, a JSON array or a Parquet file (see data-rows.ts).
 * Each converted field remembers where it was written, so a problem found later names the line and the field as
 * written in that file (`instances[0].input`, not `tasks[3].input`).
 */
import { readFile } from "node:fs/promises";
import { Document, isMap, isSeq } from "yaml";
import { z } from "zod";
import { parseYamlSource } from "../config/yaml-source.js";
import { describeZodIssues } from "../config/zod-issues.js";
import { type DataRows, readDataRows } from "../data/data-rows.js";
import { isSelfalignError } from "../errors/index.js";
import type { ConstitutionIssue } from "./constitution-issue.js";
import { formatFieldPath } from "./constitution-issue.js";
import type { RedTeamType, SeedTask } from "./constitution-schema.js";

/** The constitution files whose list may come from a file of its own. */
export const seedListKeys = ["seedTasks", "redTeam"] as const;
export type SeedListKey = (typeof seedListKeys)[number];

/** The list key in each file (`tasks:`, `types:`). */
export const seedListFields = { seedTasks: "tasks", redTeam: "types" } as const satisfies Record<SeedListKey, string>;

/** What each kind of file may hold, for error messages and help. */
export const seedFileFormats = {
  seedTasks:
    "seed tasks as Self-Instruct JSONL ({id, name, instruction, instances: [{input, output}], is_classification} " +
    "per line), plain {instruction, input, output} rows (.jsonl, a .json array or .parquet), or a seed-tasks.yaml " +
    "(`tasks:`)",
  redTeam:
    "red-team seed questions as {topic, question_type, question} rows, one per question type (.jsonl, a .json " +
    "array or .parquet), or a red-team.yaml (`types:`)",
} as const satisfies Record<SeedListKey, string>;

/** A seed list read from a file, in the shape of our YAML file (`{tasks: [...]}`), not yet validated by its schema. */
export interface SeedListSource {
  file: string;
  value: Record<string, unknown>;
  /** 1-based line of a path into `value` (`["tasks", 3, "input"]`), where known. */
  lineOf(path: ReadonlyArray<PropertyKey>): number | undefined;
  /** The field a path into `value` is written as in the file. */
  fieldOf(path: ReadonlyArray<PropertyKey>): string;
}

export type ReadSeedListResult =
  | { ok: true; source: SeedListSource; warnings: ConstitutionIssue[] }
  | { ok: false; issues: ConstitutionIssue[] };

// Null where a Parquet column has no value in that row, as for a field a JSON row leaves out.
const optionalText = z.string().nullable().optional();
const rowId = z.union([z.string(), z.number()]).nullable().optional();
const optionalFlag = z.boolean().nullable().optional();

// Field names as the public files spell them; fields we do not use (Self-Instruct's `name`, cluster ids) are ignored.
const selfInstructRowSchema = z.looseObject({
  id: rowId,
  instruction: z.string(),
  instances: z
    .array(z.looseObject({ input: optionalText, output: optionalText }))
    .min(1, "needs at least one instance"),
  is_classification: optionalFlag,
});
const plainTaskRowSchema = z.looseObject({
  id: rowId,
  instruction: z.string(),
  input: optionalText,
  output: optionalText,
  is_classification: optionalFlag,
});
const redTeamRowSchema = z.looseObject({
  id: rowId,
  topic: z.string(),
  question_type: z.string(),
  question: z.string(),
});

/** Each of our fields and where a row writes it. */
type FieldMap = Record<string, readonly PropertyKey[]>;

interface ConvertedRow {
  item: Record<string, unknown>;
  fields: FieldMap;
}

/** A kebab-case id from an id or label as written ("seed_task_0" -> "seed-task-0"). */
export function kebabIdOf(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

/** The text, or undefined when it is absent, null or blank (the public files write "" for "no input"). */
function present(text: string | null | undefined): string | undefined {
  return text === null || text === undefined || text.trim() === "" ? undefined : text;
}

function convertTaskRow(value: Record<string, unknown>, index: number): ConvertedRow | z.ZodError {
  const selfInstruct = "instances" in value;
  const parsed = (selfInstruct ? selfInstructRowSchema : plainTaskRowSchema).safeParse(value);
  if (!parsed.success) return parsed.error;
  const row = parsed.data as z.infer<typeof plainTaskRowSchema> & z.infer<typeof selfInstructRowSchema>;
  const first = selfInstruct ? row.instances[0] : row;
  const input = present(first?.input);
  const output = present(first?.output);
  return {
    item: {
      id: row.id == null ? `task-${String(index + 1).padStart(3, "0")}` : kebabIdOf(String(row.id)),
      instruction: row.instruction,
      ...(input === undefined ? {} : { input }),
      ...(output === undefined ? {} : { output }),
      isClassification: row.is_classification ?? false,
    },
    fields: {
      id: row.id == null ? [] : ["id"],
      instruction: ["instruction"],
      input: selfInstruct ? ["instances", 0, "input"] : ["input"],
      output: selfInstruct ? ["instances", 0, "output"] : ["output"],
      isClassification: ["is_classification"],
    },
  };
}

function convertRedTeamRow(value: Record<string, unknown>): ConvertedRow | z.ZodError {
  const parsed = redTeamRowSchema.safeParse(value);
  if (!parsed.success) return parsed.error;
  const row = parsed.data;
  // "Questions that require cultural context" -> "cultural-context".
  const label = row.question_type.replace(/^\s*questions that require\s+/i, "");
  return {
    item: {
      id: kebabIdOf(row.id == null ? label : String(row.id)),
      label: row.question_type,
      seedTopic: row.topic,
      seedQuestion: row.question,
    },
    fields: {
      id: row.id == null ? ["question_type"] : ["id"],
      label: ["question_type"],
      seedTopic: ["topic"],
      seedQuestion: ["question"],
    },
  };
}

/**
 * Read the seed list of `key` from `path` (any format of {@link seedFileFormats}, told apart by the file name).
 * Every problem is collected, each naming the file, line and field as written there.
 */
export async function readSeedList(key: SeedListKey, path: string): Promise<ReadSeedListResult> {
  const listField = seedListFields[key];
  const expected = seedFileFormats[key];
  if (/\.ya?ml$/i.test(path)) return readYamlSeedList(path, listField, expected);
  let rows: DataRows;
  try {
    rows = await readDataRows(path, { expected });
  } catch (error) {
    if (!isSelfalignError(error)) throw error;
    return {
      ok: false,
      issues: [
        {
          severity: "error",
          file: path,
          ...(error.line === undefined ? {} : { line: error.line }),
          ...(error.field === undefined ? {} : { field: error.field }),
          message: stripWhere(error.message, error),
        },
      ],
    };
  }
  const issues: ConstitutionIssue[] = [];
  const warnings: ConstitutionIssue[] = [];
  const at = (
    index: number,
    field: readonly PropertyKey[],
    message: string,
    severity: "error" | "warning" = "error",
  ) => {
    const where = rows.locate(index, field);
    (severity === "error" ? issues : warnings).push({
      severity,
      file: path,
      ...(where.line === undefined ? {} : { line: where.line }),
      ...(where.field ? { field: where.field } : {}),
      message,
    });
  };
  if (rows.values.length === 0) at(0, [], `holds no rows; expected ${expected}`);
  const converted: ConvertedRow[] = [];
  rows.values.forEach((value, index) => {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      at(
        index,
        [],
        `expected an object per row, got ${Array.isArray(value) ? "an array" : String(value)}; ${expected}`,
      );
      return;
    }
    const row = value as Record<string, unknown>;
    const result = key === "seedTasks" ? convertTaskRow(row, index) : convertRedTeamRow(row);
    if (result instanceof z.ZodError) {
      const schema =
        key === "redTeam" ? redTeamRowSchema : "instances" in row ? selfInstructRowSchema : plainTaskRowSchema;
      for (const described of describeZodIssues(result.issues, row, schema))
        at(index, described.path, described.message);
      return;
    }
    if (key === "seedTasks" && Array.isArray(row.instances) && row.instances.length > 1)
      at(
        index,
        ["instances"],
        `${row.instances.length} instances; only the first seeds prompts (as in the reference), the rest are ignored`,
        "warning",
      );
    converted.push(result);
  });
  if (issues.length > 0) return { ok: false, issues };
  const foreignField = (path: ReadonlyArray<PropertyKey>): { index: number; field: readonly PropertyKey[] } => {
    const index = typeof path[1] === "number" ? path[1] : 0;
    const [ours, ...rest] = path.slice(2);
    const mapped = ours === undefined ? [] : (converted[index]?.fields[String(ours)] ?? [String(ours)]);
    return { index, field: [...mapped, ...rest] };
  };
  return {
    ok: true,
    warnings,
    source: {
      file: path,
      value: { [listField]: converted.map((row) => row.item) },
      lineOf: (at) => {
        const { index, field } = foreignField(at);
        return rows.locate(index, field).line;
      },
      fieldOf: (at) => {
        if (at.length < 2) return "";
        const { index, field } = foreignField(at);
        return rows.locate(index, field).field ?? "";
      },
    },
  };
}

async function readYamlSeedList(path: string, listField: string, expected: string): Promise<ReadSeedListResult> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    const message = missing
      ? `file not found; expected ${expected}`
      : `cannot read the file: ${(error as Error).message}`;
    return { ok: false, issues: [{ severity: "error", file: path, message }] };
  }
  const parsed = parseYamlSource(path, text);
  if (!parsed.ok) return { ok: false, issues: parsed.issues };
  const value = (parsed.source.value ?? {}) as Record<string, unknown>;
  if (typeof value[listField] === "string") {
    const message = `\`${listField}:\` names another file here; a file that a constitution points at must hold the list itself`;
    return {
      ok: false,
      issues: [{ severity: "error", file: path, line: parsed.source.lineOf([listField]), field: listField, message }],
    };
  }
  return {
    ok: true,
    warnings: [],
    source: { file: path, value, lineOf: parsed.source.lineOf, fieldOf: formatFieldPath },
  };
}

/** A ConfigError's message without the "file, line N: " its constructor put in front (the issue holds those). */
function stripWhere(message: string, error: { path?: string; line?: number; field?: string }): string {
  const where = [error.path, error.line === undefined ? undefined : `line ${error.line}`, error.field]
    .filter((part) => part !== undefined)
    .join(", ");
  return where && message.startsWith(`${where}: `) ? message.slice(where.length + 2) : message;
}

/**
 * The text of our YAML file for a seed list (what `selfalign constitution import-seeds` writes): a comment naming
 * where it came from, then the list, one blank line between entries. Fields left at their default are not written.
 */
export function seedListYaml(key: "seedTasks", items: readonly SeedTask[], from: string): string;
export function seedListYaml(key: "redTeam", items: readonly RedTeamType[], from: string): string;
export function seedListYaml(key: SeedListKey, items: ReadonlyArray<SeedTask | RedTeamType>, from: string): string {
  const written = items.map((item) => {
    if (key === "redTeam") {
      const { id, label, seedTopic, seedQuestion } = item as RedTeamType;
      return { id, label, seedTopic, seedQuestion };
    }
    const { id, instruction, input, output, isClassification } = item as SeedTask;
    return {
      id,
      instruction,
      ...(input === undefined ? {} : { input }),
      ...(output === undefined ? {} : { output }),
      ...(isClassification ? { isClassification } : {}),
    };
  });
  const listField = seedListFields[key];
  const doc = new Document({ [listField]: written });
  const what = key === "seedTasks" ? "seed tasks" : "red-team seed questions";
  doc.commentBefore = ` ${items.length} ${what} imported from ${from} by "selfalign constitution import-seeds".`;
  const list = isMap(doc.contents) ? doc.contents.get(listField, true) : undefined;
  if (isSeq(list))
    list.items.forEach((node, index) => {
      if (index > 0 && node && typeof node === "object") (node as { spaceBefore?: boolean }).spaceBefore = true;
    });
  // No line folding: every text is written on the lines it has, so reading the file back gives the same texts.
  return doc.toString({ lineWidth: 0 });
}
