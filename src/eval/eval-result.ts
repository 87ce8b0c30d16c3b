/**
 * The `eval.json` every evaluation writes: task, model, data, settings (including the exact prompt template and
 * the tie-break rule), one entry per item with the exact prompts used, and aggregate numbers.
 */
import type { LanguageModel } from "../backends/language-model.js";
import { runConcurrently } from "../backends/run-concurrently.js";
import { ConfigError, throwIfAborted } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { writeJsonAtomic } from "../run-store/manifest.js";
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
  /** The data files read, recorded in eval.json. Default []. */
  data?: string[];
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

/**
 * Run `work` over items as one progress stage: stage-start, a record-end as each item finishes (with `kept` when
 * `kept` is given), stage-end. Results in input order. At most `options.concurrency` items at once, by default the
 * parallelism of `backend` (the model that does the work). No item starts once `options.signal` has aborted; the
 * first failure aborts the signal passed to `work` and is thrown once every started item has settled.
 */
export async function runEvalItems<T, R>(
  task: EvalTask,
  items: readonly T[],
  backend: LanguageModel,
  options: EvalRunOptions,
  work: (item: T, signal: AbortSignal) => Promise<R>,
  kept?: (result: R) => boolean,
): Promise<R[]> {
  const { onProgress } = options;
  const concurrency = Math.max(1, options.concurrency ?? backend.capabilities().parallel ?? 1);
  const results: R[] = new Array(items.length);
  let done = 0;
  onProgress?.({ type: "stage-start", stage: task, total: items.length });
  const finished = runConcurrently(items.length, concurrency, options.signal, async (index, signal) => {
    throwIfAborted(options.signal);
    return { index, result: await work(items[index]!, signal) };
  });
  for await (const { index, result } of finished) {
    results[index] = result;
    onProgress?.({
      type: "record-end",
      stage: task,
      done: ++done,
      total: items.length,
      ...(kept ? { kept: kept(result) } : {}),
    });
  }
  onProgress?.({ type: "stage-end", stage: task, done });
  return results;
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
