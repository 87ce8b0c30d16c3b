/**
 * The `eval.json` every evaluation writes: task, model, data, settings (including the exact prompt template and
 * the tie-break rule), one entry per item with the exact prompts used, and aggregate numbers.
 */
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { writeJsonAtomic } from "../run-store/manifest.js";
import type { Run } from "../run-store/run.js";
import { parseJsonText, readDataFile } from "./data/read-data-file.js";

export const evalTasks = [
  "truthfulqa-mc1",
  "truthfulqa-mc2",
  "truthfulqa-tf",
  "hhh",
  "generate-answers",
  "judge-single",
  "judge-pairwise",
] as const;
export type EvalTask = (typeof evalTasks)[number];

/**
 * The folder of a run directory where `selfalign eval --run <run>` writes its results (`<run>/eval/<name>.json`) and
 * `selfalign report` reads them.
 */
export const evalDirName = "eval";

/** Aggregate numbers: plain metrics, or one level of groups (e.g. per-category accuracy). */
export type EvalAggregate = Record<string, number | Record<string, number>>;

export interface EvalResult<Item = unknown> {
  task: EvalTask;
  /** Model under test (its backend id) and adapter, when one was loaded. */
  model: { id: string; adapter?: string };
  judge?: { id: string };
  data: string[];
  createdAt: string;
  /** How arg-max ties were broken (score tasks). */
  tieBreak?: string;
  settings: Record<string, unknown>;
  aggregate: EvalAggregate;
  items: Item[];
  /** Items that could not be evaluated (e.g. a prompt longer than the context), each with its filter and reason. */
  skipped?: Array<{ id: string; filter: string; reason: string }>;
  warnings: string[];
}

/** Options shared by every task runner. */
export interface EvalRunOptions {
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /** Requests in flight at once. Default: the backend's `capabilities().parallel`. */
  concurrency?: number;
  /** The data files read, recorded in eval.json. Default []. */
  data?: string[];
  /**
   * An open run directory to keep per-item results in (`<store>/<task>/records.jsonl`, skipped items in
   * `rejected.jsonl`): each is written as it finishes, and a stopped evaluation run again continues where it
   * stopped. Default: results are kept in memory only.
   */
  store?: Run;
}

/** The fields every eval.json starts with: task, model under test (with its adapter), judge, data, time. */
export function evalResultHead(
  task: EvalTask,
  options: { data?: string[]; adapter?: string },
  modelId: string,
  judgeId?: string,
): Pick<EvalResult, "task" | "model" | "judge" | "data" | "createdAt"> {
  return {
    task,
    model: { id: modelId, ...(options.adapter ? { adapter: options.adapter } : {}) },
    ...(judgeId === undefined ? {} : { judge: { id: judgeId } }),
    data: options.data ?? [],
    createdAt: new Date().toISOString(),
  };
}

export async function writeEvalResult(path: string, result: EvalResult): Promise<void> {
  await writeJsonAtomic(path, result);
}

export async function readEvalResult(path: string): Promise<EvalResult> {
  const expected = "an eval.json written by `selfalign eval`";
  const result = parseJsonText(await readDataFile(path, expected), path, expected) as Partial<EvalResult>;
  if (!result || typeof result !== "object" || typeof result.task !== "string" || !result.aggregate) {
    throw new ConfigError('expected an eval.json written by `selfalign eval` (with "task" and "aggregate")', {
      path,
      field: typeof result?.task === "string" ? "aggregate" : "task",
    });
  }
  return result as EvalResult;
}

/** Flatten an aggregate into dotted metric names ("accuracy.harmless"). */
export function flattenAggregate(aggregate: EvalAggregate): Map<string, number> {
  const flat = new Map<string, number>();
  for (const [key, value] of Object.entries(aggregate)) {
    // NaN (no data) is written to JSON as null.
    if (typeof value === "number" || value === null) flat.set(key, value ?? Number.NaN);
    else if (typeof value === "object") {
      for (const [inner, number] of Object.entries(value)) flat.set(`${key}.${inner}`, number ?? Number.NaN);
    }
  }
  return flat;
}

export interface EvalComparisonRow {
  metric: string;
  a?: number;
  b?: number;
  /** b - a, when both have the metric. */
  delta?: number;
}

/** Metric-by-metric comparison of two results (b minus a). */
export function compareEvalResults(a: EvalResult, b: EvalResult): EvalComparisonRow[] {
  const left = flattenAggregate(a.aggregate);
  const right = flattenAggregate(b.aggregate);
  const metrics = [...left.keys(), ...[...right.keys()].filter((key) => !left.has(key))];
  return metrics.map((metric) => {
    const valueA = left.get(metric);
    const valueB = right.get(metric);
    return {
      metric,
      ...(valueA === undefined ? {} : { a: valueA }),
      ...(valueB === undefined ? {} : { b: valueB }),
      ...(valueA === undefined || valueB === undefined ? {} : { delta: valueB - valueA }),
    };
  });
}

/** Ids of the items a result scored; undefined when its items carry no `id` (files written by older versions). */
export function scoredItemIds(result: EvalResult): string[] | undefined {
  const ids = result.items.map((item) =>
    item !== null && typeof item === "object" ? (item as { id?: unknown }).id : undefined,
  );
  return ids.every((id) => typeof id === "string") ? (ids as string[]) : undefined;
}

/**
 * When two results scored different item sets (other data, or items skipped in one only), what differs: their
 * aggregates then average over different questions. Undefined when the sets are equal or cannot be told.
 */
export function itemSetDifference(a: EvalResult, b: EvalResult): { onlyA: string[]; onlyB: string[] } | undefined {
  const left = scoredItemIds(a);
  const right = scoredItemIds(b);
  if (!left || !right) return undefined;
  const inLeft = new Set(left);
  const inRight = new Set(right);
  const onlyA = left.filter((id) => !inRight.has(id));
  const onlyB = right.filter((id) => !inLeft.has(id));
  return onlyA.length === 0 && onlyB.length === 0 ? undefined : { onlyA, onlyB };
}

/** A plain-text table of a comparison. */
export function formatComparison(rows: readonly EvalComparisonRow[], labels: [string, string]): string {
  const format = (value: number | undefined, signed = false) =>
    value === undefined || Number.isNaN(value)
      ? "-"
      : `${signed && value > 0 ? "+" : ""}${Number.isInteger(value) ? value : value.toFixed(4)}`;
  const table = [
    ["metric", labels[0], labels[1], "delta"],
    ...rows.map((row) => [row.metric, format(row.a), format(row.b), format(row.delta, true)]),
  ];
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  return table
    .map((row) =>
      row
        .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
        .join("  "),
    )
    .join("\n");
}
