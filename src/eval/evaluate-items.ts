/**
 * The item loop of every evaluation: each item evaluated once, results returned in input order. With a run store
 * (`store`), each result is appended to `<store>/<task>/records.jsonl` the moment it finishes, and an item that
 * cannot be evaluated (a prompt longer than the context) to `rejected.jsonl` with its reason, so a stopped or killed
 * evaluation continues where it stopped: finished items are read back, never evaluated again.
 */
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { type LanguageModel, requestConcurrency } from "../backends/language-model.js";
import { runConcurrently } from "../backends/run-concurrently.js";
import { BackendError, throwIfAborted } from "../errors/index.js";
import {
  describeDifferences,
  readFolderSettings,
  settingsKey,
  settingsKeyFile,
  switchStageFolders,
} from "../pipeline/stage-settings.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { readJsonl } from "../run-store/jsonl.js";
import { writeJsonAtomic } from "../run-store/manifest.js";
import { canonicalJson } from "../run-store/record-id.js";
import type { Run } from "../run-store/run.js";
import { readStageFolder, type StageStore } from "../run-store/stage-store.js";
import type { EvalRunOptions, EvalTask } from "./eval-result.js";

/** Why an item was not evaluated: a filter name and a reason a person can read, with what was tried. */
export interface EvalSkip {
  filter: string;
  reason: string;
  /** Text that was tried (the question, answers generated before the overflow), kept with the skip record. */
  detail?: Record<string, unknown>;
}

/** What evaluating one item produced. */
export type EvalOutcome<R> = { result: R } | { skipped: EvalSkip };

/** A skipped item as stored in `rejected.jsonl` and listed in eval.json. */
export const skippedItemSchema = z.looseObject({ id: z.string(), filter: z.string(), reason: z.string() });
export type SkippedItem = z.infer<typeof skippedItemSchema>;

export interface EvaluateItemsSpec<I, R extends { id: string }> {
  task: EvalTask;
  items: readonly I[];
  /** The item's id; results carry it as `id`. Unique within `items`. */
  itemId: (item: I) => string;
  /** The model that does the work; its parallelism is the default concurrency. */
  backend: LanguageModel;
  /**
   * Everything the results depend on besides the items (model ids, adapter, prompts, sampling). A stored task folder
   * made with other settings or other items is moved aside, and one made with these is brought back.
   */
  settings: Record<string, unknown>;
  /** Checks each stored result when it is read back. */
  resultSchema: z.ZodType<R>;
  evaluate: (item: I, signal: AbortSignal) => Promise<EvalOutcome<NoInfer<R>>>;
  /** Whether a result counts as kept in progress events (e.g. a parsed judgment). Default: every result. */
  kept?: (result: R) => boolean;
}

export interface EvaluatedItems<R> {
  /** Results of the evaluated items, in input order. */
  results: R[];
  /** Items that could not be evaluated, in input order. */
  skipped: SkippedItem[];
  /** Items found finished in the store (0 without one). */
  resumed: number;
}

/** The settings fingerprint of a task folder: sha256 of the canonical JSON of settings and items. */
export function evalSettingsKey(settings: Record<string, unknown>, items: readonly unknown[]): string {
  return createHash("sha256").update(canonicalJson({ settings, items })).digest("hex");
}

/** Evaluate every item (see the module comment); `options.store` makes it resumable. */
export async function evaluateItems<I, R extends { id: string }>(
  spec: EvaluateItemsSpec<I, R>,
  options: EvalRunOptions,
): Promise<EvaluatedItems<R>> {
  const concurrency = requestConcurrency(spec.backend, options.concurrency);
  return options.store
    ? evaluateIntoStore(spec, options.store, concurrency, options)
    : evaluateInMemory(spec, concurrency, options);
}

async function evaluateInMemory<I, R extends { id: string }>(
  spec: EvaluateItemsSpec<I, R>,
  concurrency: number,
  { onProgress, signal }: EvalRunOptions,
): Promise<EvaluatedItems<R>> {
  const { task, items } = spec;
  const outcomes: EvalOutcome<R>[] = new Array(items.length);
  let done = 0;
  onProgress?.({ type: "stage-start", stage: task, total: items.length });
  const finished = runConcurrently(items.length, concurrency, signal, async (index, itemSignal) => {
    throwIfAborted(signal);
    return { index, outcome: await spec.evaluate(items[index]!, itemSignal) };
  });
  for await (const { index, outcome } of finished) {
    outcomes[index] = outcome;
    const kept = "result" in outcome ? (spec.kept?.(outcome.result) ?? true) : false;
    onProgress?.({
      type: "record-end",
      stage: task,
      done: ++done,
      total: items.length,
      kept,
      ...("skipped" in outcome ? { reason: `${outcome.skipped.filter}: ${outcome.skipped.reason}` } : {}),
    });
  }
  onProgress?.({ type: "stage-end", stage: task, done });
  const results: R[] = [];
  const skipped: SkippedItem[] = [];
  outcomes.forEach((outcome, index) => {
    if ("result" in outcome) results.push(outcome.result);
    else skipped.push(skipRecord(spec.itemId(items[index]!), outcome.skipped));
  });
  return { results, skipped, resumed: 0 };
}

function skipRecord(id: string, skip: EvalSkip): SkippedItem {
  return { id, filter: skip.filter, reason: skip.reason, ...skip.detail };
}

async function evaluateIntoStore<I, R extends { id: string }>(
  spec: EvaluateItemsSpec<I, R>,
  run: Run,
  concurrency: number,
  { onProgress, signal }: EvalRunOptions,
): Promise<EvaluatedItems<R>> {
  const store = await openTaskFolder(run, spec.task, spec.settings, spec.items, onProgress);
  const inputs = spec.items.map((item) => ({ id: spec.itemId(item), item }));
  const progress = await store.processItems({
    items: inputs,
    concurrency,
    ...(signal ? { signal } : {}),
    ...(onProgress ? { onProgress } : {}),
    process: async ({ id, item }, itemSignal) => {
      const outcome = await spec.evaluate(item, itemSignal);
      return "result" in outcome ? { kept: outcome.result } : { rejected: skipRecord(id, outcome.skipped) };
    },
  });
  // Everything is read back from the files, so a resumed evaluation returns exactly what an uninterrupted one does.
  const stored = new Map<string, R>();
  for (const record of await store.readRecords(spec.resultSchema)) stored.set(record.id, record);
  const rejected = new Map<string, SkippedItem>();
  for (const record of (await readJsonl(store.rejectedPath, { schema: skippedItemSchema })).records)
    rejected.set(record.id, record);
  const results: R[] = [];
  const skipped: SkippedItem[] = [];
  for (const { id } of inputs) {
    const result = stored.get(id);
    if (result) results.push(result);
    else {
      const skip = rejected.get(id);
      if (skip) skipped.push(skip);
    }
  }
  return { results, skipped, resumed: progress.skipped };
}

/**
 * Open `<run>/<task>/` for these settings, through the settings guard every stage uses (stage-settings.ts): a folder
 * made with other settings or items moves to `<run>/previous/<task>-<key>/` (nothing paid for is deleted), and a
 * folder kept there for these settings moves back. The items are part of the settings, by their digest.
 */
async function openTaskFolder(
  run: Run,
  task: string,
  settings: Record<string, unknown>,
  items: readonly unknown[],
  onProgress: ProgressListener | undefined,
): Promise<StageStore> {
  const folder = join(run.dir, task);
  const guarded = { ...settings, items: evalSettingsKey({}, items) };
  const saved = await readFolderSettings(folder);
  // Only a folder that is not this settings' own is read: to count what moves aside, or to label one from before
  // the guard, whose manifest holds the key of the old scheme.
  const other =
    saved?.key !== settingsKey(guarded) && (await exists(folder)) ? await readStageFolder(folder, task) : undefined;
  const legacy = saved === undefined ? other?.manifest.extra.settingsKey : undefined;
  if (typeof legacy === "string" && legacy !== evalSettingsKey(settings, items))
    await writeJsonAtomic(join(folder, settingsKeyFile), { key: `legacy-${legacy}` });
  const moved = await switchStageFolders(run.dir, task, [task], guarded);
  if (moved.movedAside) {
    const changed = saved?.settings ? ` (${describeDifferences(saved, guarded)})` : "";
    onProgress?.({
      type: "message",
      level: "warn",
      text: `${task}: the ${other?.tally.ids.size ?? 0} stored items were made with other settings or data${changed}; moved them to ${moved.movedAside} and starting afresh`,
    });
  }
  if (moved.restoredFrom)
    onProgress?.({
      type: "message",
      level: "info",
      text: `${task}: brought back the items stored earlier with these settings from ${moved.restoredFrom}`,
    });
  const store = await run.stage(task);
  store.manifest.extra.settings = JSON.parse(JSON.stringify(settings)) as unknown;
  await store.saveManifest();
  return store;
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

/**
 * Whether a backend refused this one request for good (a 400: for example a prompt longer than a server's context).
 * Such an item is skipped with the server's message; anything else (a server down, a 5xx, a bad model name)
 * still stops the evaluation, which a re-run then continues.
 */
export function isRequestRefused(error: unknown): error is BackendError {
  return error instanceof BackendError && !error.retryable && error.statusCode === 400;
}

/** The skip for a prompt that leaves no room in the context, or undefined when it fits. */
export async function contextOverflow(
  model: LanguageModel,
  prompt: string,
  where: string,
): Promise<EvalSkip | undefined> {
  const maxContext = model.capabilities().maxContext;
  if (!(maxContext > 0)) return undefined;
  let promptTokens: number;
  try {
    promptTokens = await model.countTokens(prompt);
  } catch (error) {
    // A server without a tokenizer endpoint (a hosted API): its own 400 for a prompt too long is the check then.
    if (error instanceof BackendError && !error.retryable) return undefined;
    throw error;
  }
  // Room for a BOS token, one generated token and the one position the embedded engine keeps free.
  if (promptTokens + 3 <= maxContext) return undefined;
  return {
    filter: "context-overflow",
    reason: `${where}: the prompt has ${promptTokens} tokens, which leaves no room in the model's ${maxContext}-token context (raise the context size, e.g. llama-cpp:<m.gguf> with contextSize, or use a model with a longer one)`,
  };
}
