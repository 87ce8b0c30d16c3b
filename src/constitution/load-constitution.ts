/**
 * Load a constitution folder (five YAML files), validating every file with zod and the links between them.
 * Every problem names the file, the line and the field, and says how to fix it.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
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
import { parseYamlSource, type YamlSource } from "../config/yaml-source.js";
import { describeZodIssues } from "../config/zod-issues.js";

export interface ReadConstitutionResult {
  /** Present when no issue is an error. */
  constitution?: Constitution;
  /** Every problem found while loading (errors and warnings). */
  issues: ConstitutionIssue[];
}

/** Where each field of a loaded constitution was written; kept beside the object, not in it. */
const locations = new WeakMap<Constitution, Record<ConstitutionFileKey, { file: string; source: YamlSource }>>();

/** File and line of a field of a constitution returned by `loadConstitution` / `readConstitution`. */
export function locateInConstitution(
  constitution: Constitution,
  key: ConstitutionFileKey,
  path: ReadonlyArray<PropertyKey>,
): { file: string; line?: number } {
  const located = locations.get(constitution)?.[key];
  const file = located?.file ?? join(constitution.dir, constitutionFiles[key].file);
  return { file, line: located?.source.lineOf(path) };
}

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
  const parsed: Partial<Record<ConstitutionFileKey, { file: string; source: YamlSource; data: unknown }>> = {};
  // Principle ids as written, even when principles.yaml fails validation, so exemplars' citations are still checked.
  let writtenPrincipleIds: string[] | undefined;
  for (const key of Object.keys(constitutionFiles) as ConstitutionFileKey[]) {
    const spec = constitutionFiles[key];
    const file = join(dir, spec.file);
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
    const value = result.source.value ?? {};
    const validated = (spec.schema as z.ZodType).safeParse(value);
    if (!validated.success) {
      for (const described of describeZodIssues(validated.error.issues, value, spec.schema)) {
        issues.push({
          severity: "error",
          file,
          line: result.source.lineOf(described.path),
          field: formatFieldPath(described.path) || undefined,
          message: described.message,
        });
      }
      continue;
    }
    parsed[key] = { file, source: result.source, data: validated.data };
  }
  const { principles, exemplars, redTeam, seedTasks, assistant } = parsed;
  const at = (entry: { file: string; source: YamlSource }, path: PropertyKey[], message: string) =>
    issues.push({
      severity: "error",
      file: entry.file,
      line: entry.source.lineOf(path),
      field: formatFieldPath(path),
      message,
    });
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
        `duplicate id "${value}", already used by ${listKey}[${first}] (line ${entry.source.lineOf([listKey, first, "id"])}); give each entry its own id`,
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
  const fileOrder = Object.values(constitutionFiles).map((spec) => join(dir, spec.file));
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

function idsAsWritten(value: unknown, listKey: string): string[] {
  const list = value && typeof value === "object" ? (value as Record<string, unknown>)[listKey] : undefined;
  if (!Array.isArray(list)) return [];
  return list.flatMap((item) => (item && typeof item.id === "string" ? [item.id as string] : []));
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
