/**
 * The `eval.json` every evaluation writes: task, model, data, settings (including the exact prompt template and
 * the tie-break rule), one entry per item with the exact prompts used, and aggregate numbers.
 */
import { readFile, writeFile } from "node:fs/promises";
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";

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
  warnings: string[];
}

/** Options shared by every task runner. */
export interface EvalRunOptions {
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /** Requests in flight at once. Default: the backend's `capabilities().parallel`. */
  concurrency?: number;
}

export async function writeEvalResult(path: string, result: EvalResult): Promise<void> {
  await writeFile(path, `${JSON.stringify(result, null, 2)}\n`);
}

export async function readEvalResult(path: string): Promise<EvalResult> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new ConfigError("file not found; expected an eval.json written by `selfalign eval`", { path });
    }
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`is not valid JSON (${(error as Error).message}); expected an eval.json`, { path });
  }
  const result = value as Partial<EvalResult>;
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

/** Run `work` over items with at most `concurrency` in flight; results in input order. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return results;
}
