/**
 * Load a constitution folder (five YAML files), validating every file with zod and the links between them.
 * seed-tasks.yaml and red-team.yaml may instead name a file holding their list in the field's formats
 * (`tasks: ./seed_tasks.jsonl`, `types: ./seed_questions.jsonl`; see seed-files.ts).
 * Every problem names the file, the line and the field, and says how to fix it.
 */
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { hashConstitution } from "./constitution-hash.js";
import { type ConstitutionIssue, findRepeats, formatConstitutionIssue, formatFieldPath } from "./constitution-issue.js";
import {
  type Assistant,
  type Constitution,
  type ConstitutionContent,
  type ConstitutionFileKey,
  constitutionFiles,
  type Exemplar,
  type Principle,
  type RedTeamType,
  type SeedTask,
} from "./constitution-schema.js";
import { parseYamlSource } from "../config/yaml-source.js";
import { describeZodIssues } from "../config/zod-issues.js";
import { readSeedList, type SeedListKey, type SeedListSource, seedFileFormats, seedListFields } from "./seed-files.js";

export interface ReadConstitutionResult {
  /** Present when no issue is an error. */
  constitution?: Constitution;
  /** Every problem found while loading (errors and warnings). */
  issues: ConstitutionIssue[];
}

/** Where a file's fields are written: the file (a YAML file of the folder, or the file it names) and its layout. */
type Located = Pick<SeedListSource, "file" | "lineOf" | "fieldOf">;

/** Where each field of a loaded constitution was written; kept beside the object, not in it. */
const locations = new WeakMap<Constitution, Record<ConstitutionFileKey, Located>>();

/**
 * File, line and field (as written in that file) of a field of a constitution returned by `loadConstitution` /
 * `readConstitution`. `path` is a path into the file's content, e.g. `["tasks", 3, "input"]`.
 */
export function locateInConstitution(
  constitution: Constitution,
  key: ConstitutionFileKey,
  path: ReadonlyArray<PropertyKey>,
): { file: string; line?: number; field?: string } {
  const located = locations.get(constitution)?.[key];
  const file = located?.file ?? join(constitution.dir, constitutionFiles[key].file);
  const field = (located?.fieldOf ?? formatFieldPath)(path) || undefined;
  return { file, line: located?.lineOf(path), ...(field === undefined ? {} : { field }) };
}

const isSeedListKey = (key: ConstitutionFileKey): key is SeedListKey => key === "seedTasks" || key === "redTeam";

/** Read and validate a constitution folder, collecting every problem instead of stopping at the first. */
export async function readConstitution(dir: string): Promise<ReadConstitutionResult> {
  const issues: ConstitutionIssue[] = [];
  const folder = await stat(dir).catch(() => undefined);
  if (!folder?.isDirectory()) {
    const what = folder ? "is a file, not a folder" : "does not exist";
    const message = `constitution folder ${what}; pass a folder holding ${Object.values(constitutionFiles)
      .map((spec) => spec.file)
      .join(", ")} (create one with "selfalign init <dir>")`;
    return { issues: [{ severity: "error", file: dir, message }] };
  }
  const parsed: Partial<Record<ConstitutionFileKey, Located & { data: unknown }>> = {};
  // Principle ids as written, even when principles.yaml fails validation, so exemplars' citations are still checked.
  let writtenPrincipleIds: string[] | undefined;
  // Issues are listed file by file, a named seed file right after the YAML file that names it.
  const fileOrder: string[] = [];
  for (const key of Object.keys(constitutionFiles) as ConstitutionFileKey[]) {
    const spec = constitutionFiles[key];
    const file = join(dir, spec.file);
    fileOrder.push(file);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
      issues.push({
        severity: "error",
        file,
        message: missing
          ? `missing file; a constitution folder needs ${spec.file} holding ${spec.holds} (run "selfalign init <dir>" for a complete example)`
          : `cannot read the file: ${(error as Error).message}`,
      });
      continue;
    }
    const result = parseYamlSource(file, text);
    if (!result.ok) {
      issues.push(...result.issues);
      continue;
    }
    if (key === "principles") writtenPrincipleIds = idsAsWritten(result.source.value, "principles");
    // An empty file is an empty mapping, so its message is "missing required field" like any other.
    let value = result.source.value ?? {};
    let located: Located = { file, lineOf: result.source.lineOf, fieldOf: formatFieldPath };
    if (isSeedListKey(key)) {
      const named = await readNamedSeedList(dir, key, { ...located, value });
      if (named) {
        fileOrder.push(...(named.ok ? [named.source.file] : named.issues.map((issue) => issue.file)));
        if (!named.ok) {
          issues.push(...named.issues);
          continue;
        }
        issues.push(...named.warnings);
        ({ value } = named.source);
        located = named.source;
      }
    }
    const validated = validateFile(key, value, located);
    if (!validated.ok) {
      issues.push(...validated.issues);
      continue;
    }
    parsed[key] = { file: located.file, lineOf: located.lineOf, fieldOf: located.fieldOf, data: validated.data };
  }
  const { principles, exemplars, redTeam, seedTasks, assistant } = parsed;
  const at = (entry: Located, path: PropertyKey[], message: string) =>
    issues.push({ severity: "error", file: entry.file, line: entry.lineOf(path), field: entry.fieldOf(path), message });
  const listOf = <T>(entry: { data: unknown } | undefined, listKey: string): T[] | undefined =>
    entry ? ((entry.data as Record<string, unknown>)[listKey] as T[]) : undefined;
  const principleList = listOf<Principle>(principles, "principles");
  const exemplarList = listOf<Exemplar>(exemplars, "exemplars");

  // Links within and between files, checked for every file that parsed, so one broken file hides nothing else.
  const uniqueness = [
    [principles, "principles"],
    [exemplars, "exemplars"],
    [redTeam, "types"],
    [seedTasks, "tasks"],
  ] as const;
  for (const [entry, listKey] of uniqueness) {
    if (!entry) continue;
    const ids = (listOf<{ id: string }>(entry, listKey) ?? []).map((item) => item.id);
    for (const { value, index, first } of findRepeats(ids)) {
      at(
        entry,
        [listKey, index, "id"],
        `duplicate id "${value}", already used by ${listKey}[${first}] (line ${entry.lineOf([listKey, first, "id"])}); give each entry its own id`,
      );
    }
  }
  if (principles && principleList) {
    for (const { value, index, first } of findRepeats(principleList.map((principle) => principle.number))) {
      at(
        principles,
        ["principles", index, "number"],
        `duplicate number ${value}, already used by principles[${first}]; number the rules 1, 2, 3, ...`,
      );
    }
  }
  if (exemplars && exemplarList && writtenPrincipleIds) {
    const known = new Set(writtenPrincipleIds);
    exemplarList.forEach((exemplar, e) => {
      exemplar.turns.forEach((turn, t) => {
        turn.cites.forEach((cited, c) => {
          if (!known.has(cited))
            at(
              exemplars,
              ["exemplars", e, "turns", t, "cites", c],
              `unknown principle id "${cited}"; known ids: ${[...known].join(", ")}`,
            );
        });
      });
    });
  }
  issues.sort((a, b) => fileOrder.indexOf(a.file) - fileOrder.indexOf(b.file) || (a.line ?? 0) - (b.line ?? 0));
  if (!principles || !exemplars || !redTeam || !seedTasks || !assistant) return { issues };
  const content: ConstitutionContent = {
    principles: principleList ?? [],
    exemplars: exemplarList ?? [],
    redTeamTypes: listOf<RedTeamType>(redTeam, "types") ?? [],
    seedTasks: listOf<SeedTask>(seedTasks, "tasks") ?? [],
    assistant: assistant.data as Assistant,
  };
  if (issues.some((issue) => issue.severity === "error")) return { issues };

  const constitution: Constitution = { ...content, hash: hashConstitution(content), dir };
  locations.set(constitution, { principles, exemplars, redTeam, seedTasks, assistant });
  return { constitution, issues };
}

/**
 * The list a seed-tasks.yaml or red-team.yaml names by file (`tasks: ./seed_tasks.jsonl`, relative to the folder);
 * undefined when the YAML file holds the list itself.
 */
async function readNamedSeedList(
  dir: string,
  key: SeedListKey,
  yaml: Located & { value: unknown },
): Promise<Awaited<ReturnType<typeof readSeedList>> | undefined> {
  const listField = seedListFields[key];
  const value = yaml.value as Record<string, unknown> | null;
  const named = value && typeof value === "object" ? value[listField] : undefined;
  if (typeof named !== "string") return undefined;
  const issue = (path: PropertyKey[], message: string): ConstitutionIssue => ({
    severity: "error",
    file: yaml.file,
    line: yaml.lineOf(path),
    field: formatFieldPath(path),
    message,
  });
  const others = Object.keys(value ?? {}).filter((field) => field !== listField);
  if (others.length > 0) {
    const message = `unknown field "${others[0]}"; a file whose \`${listField}:\` names a file holds nothing else`;
    return { ok: false, issues: [issue([others[0]!], message)] };
  }
  const path = resolve(dir, named);
  const found = await stat(path).catch(() => undefined);
  if (!found?.isFile()) {
    const what = found ? "is a folder" : "does not exist";
    const message = `names ${named}, which ${what} (${path}); name a file, relative to the constitution folder, holding ${seedFileFormats[key]}`;
    return { ok: false, issues: [issue([listField], message)] };
  }
  return readSeedList(key, path);
}

/** Validate one file's content with its schema; problems are located in the file the content came from. */
function validateFile(
  key: ConstitutionFileKey,
  value: unknown,
  located: Located,
): { ok: true; data: unknown } | { ok: false; issues: ConstitutionIssue[] } {
  const schema = constitutionFiles[key].schema as z.ZodType;
  const validated = schema.safeParse(value);
  if (validated.success) return { ok: true, data: validated.data };
  return {
    ok: false,
    issues: describeZodIssues(validated.error.issues, value, schema).map((described) => ({
      severity: "error" as const,
      file: located.file,
      line: located.lineOf(described.path),
      field: located.fieldOf(described.path) || undefined,
      message: described.message,
    })),
  };
}

function idsAsWritten(value: unknown, listKey: string): string[] {
  const list = value && typeof value === "object" ? (value as Record<string, unknown>)[listKey] : undefined;
  if (!Array.isArray(list)) return [];
  return list.flatMap((item) => (item && typeof item.id === "string" ? [item.id as string] : []));
}

/**
 * Read seed tasks (`key` "seedTasks") or red-team seed questions ("redTeam") from a file in any format of
 * seed-files.ts and validate them exactly as a constitution folder's list; what `selfalign constitution import-seeds`
 * converts. Throws a ConfigError naming the file, line and field of the first problem.
 */
export async function importSeedList(key: "seedTasks", path: string): Promise<ImportSeedListResult<SeedTask>>;
export async function importSeedList(key: "redTeam", path: string): Promise<ImportSeedListResult<RedTeamType>>;
export async function importSeedList(key: SeedListKey, path: string): Promise<ImportSeedListResult<unknown>> {
  const read = await readSeedList(key, path);
  const issues = read.ok ? [] : read.issues;
  let items: Array<{ id: string }> = [];
  if (read.ok) {
    const validated = validateFile(key, read.source.value, read.source);
    if (validated.ok) {
      const listKey = seedListFields[key];
      items = (validated.data as Record<string, Array<{ id: string }>>)[listKey] ?? [];
      for (const { value, index, first } of findRepeats(items.map((item) => item.id))) {
        const path = [listKey, index, "id"];
        issues.push({
          severity: "error",
          file: read.source.file,
          line: read.source.lineOf(path),
          field: read.source.fieldOf(path) || undefined,
          message: `duplicate id "${value}", already used by ${listKey}[${first}] (line ${read.source.lineOf([listKey, first, "id"])}); give each entry its own id`,
        });
      }
    } else issues.push(...validated.issues);
  }
  const first = issues[0];
  if (first) {
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : "";
    throw new ConfigError(formatConstitutionIssue(first) + more, {
      path: first.file,
      line: first.line,
      field: first.field,
    });
  }
  return { items, warnings: read.ok ? read.warnings : [] };
}

export interface ImportSeedListResult<T> {
  items: T[];
  /** Things worth a look that do not stop the import (extra Self-Instruct instances are ignored). */
  warnings: ConstitutionIssue[];
}

/**
 * Load and validate a constitution folder. Throws a ConfigError naming the file, line and field of the first
 * problem (and how many more there are; `selfalign constitution check <dir>` lists them all).
 */
export async function loadConstitution(dir: string): Promise<Constitution> {
  const { constitution, issues } = await readConstitution(dir);
  const errors = issues.filter((issue) => issue.severity === "error");
  const first = errors[0];
  if (first || !constitution) {
    const more =
      errors.length > 1
        ? ` (and ${errors.length - 1} more problem${errors.length > 2 ? "s" : ""}; run "selfalign constitution check ${dir}" to list them)`
        : "";
    throw new ConfigError(first ? formatConstitutionIssue(first) + more : `cannot load the constitution in ${dir}`, {
      path: first?.file,
      line: first?.line,
      field: first?.field,
    });
  }
  return constitution;
}
