/** A stage's manifest.json: counts (recomputed from the record files on open), token usage, timings, extras. */
import { rename, writeFile } from "node:fs/promises";
import { z } from "zod";
import type { TokenUsage } from "../backends/language-model.js";
import { ConfigError } from "../errors/index.js";
import { readJsonFile } from "./json-file.js";

export const manifestSchema = z.object({
  stage: z.string(),
  shard: z.object({ index: z.number().int().min(0), count: z.number().int().min(1) }).optional(),
  counts: z.object({
    kept: z.number().int().min(0),
    rejected: z.number().int().min(0),
    byFilter: z.record(z.string(), z.number().int().min(0)),
  }),
  usage: z.object({
    promptTokens: z.number().min(0),
    completionTokens: z.number().min(0),
    evaluatedPromptTokens: z.number().min(0),
    /** Requests the HTTP backend had to retry (a server that failed, throttled or timed out), for the stage's record. */
    retries: z.number().int().min(0).optional(),
  }),
  timings: z.object({ startedAt: z.string(), updatedAt: z.string(), seconds: z.number().min(0) }),
  /** Stage-specific figures, e.g. `principleUsage`. */
  extra: z.record(z.string(), z.unknown()),
});
export type Manifest = z.infer<typeof manifestSchema>;

export function emptyManifest(stage: string, now = new Date()): Manifest {
  return {
    stage,
    counts: { kept: 0, rejected: 0, byFilter: {} },
    usage: { promptTokens: 0, completionTokens: 0, evaluatedPromptTokens: 0 },
    timings: { startedAt: now.toISOString(), updatedAt: now.toISOString(), seconds: 0 },
    extra: {},
  };
}

/** Read a manifest; undefined when the file does not exist. */
export async function readManifest(path: string): Promise<Manifest | undefined> {
  const value = await readJsonFile(path);
  if (value === undefined) return undefined;
  const parsed = manifestSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `not a valid stage manifest: ${issue?.message}. Delete it and run the stage again to rebuild it from the records.`,
      { path, field: issue?.path.join(".") },
    );
  }
  return parsed.data;
}

let temporaryCounter = 0;

/** Write JSON atomically: to a temporary file, then rename over the target. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const temporary = `${path}.${process.pid}-${++temporaryCounter}.tmp`;
  await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`);
  await rename(temporary, path);
}

export function addUsage(total: Manifest["usage"], usage: TokenUsage): void {
  total.promptTokens += usage.promptTokens;
  total.completionTokens += usage.completionTokens;
  total.evaluatedPromptTokens += usage.evaluatedPromptTokens ?? usage.promptTokens;
  if (usage.retries) total.retries = (total.retries ?? 0) + usage.retries;
}

/** Sum the manifests of several shards (counts, usage, seconds); extras are kept per shard under `extra.shards`. */
export function sumManifests(stage: string, manifests: Manifest[]): Manifest {
  const total = emptyManifest(stage);
  if (manifests.length === 0) return total;
  total.timings.startedAt = manifests.map((m) => m.timings.startedAt).sort()[0]!;
  total.timings.updatedAt = manifests
    .map((m) => m.timings.updatedAt)
    .sort()
    .at(-1)!;
  for (const manifest of manifests) {
    total.counts.kept += manifest.counts.kept;
    total.counts.rejected += manifest.counts.rejected;
    for (const [filter, count] of Object.entries(manifest.counts.byFilter)) {
      total.counts.byFilter[filter] = (total.counts.byFilter[filter] ?? 0) + count;
    }
    total.usage.promptTokens += manifest.usage.promptTokens;
    total.usage.completionTokens += manifest.usage.completionTokens;
    total.usage.evaluatedPromptTokens += manifest.usage.evaluatedPromptTokens;
    if (manifest.usage.retries) total.usage.retries = (total.usage.retries ?? 0) + manifest.usage.retries;
    total.timings.seconds += manifest.timings.seconds;
  }
  return total;
}

/**
 * Counts of a stage's files, fed one record at a time: an id stored twice counts once (the first time). Used both
 * when the files are read and as records are appended, so the two can never count differently.
 *
 * A rejected record carrying `retryOf` (the id of the input it rejected, e.g. a prompt too long for the context) does
 * not finish that input: it is retried whenever the stage runs again, and once the input has finished (a later run
 * with a larger context kept it) the old rejection is no longer counted.
 */
export class RecordTally {
  readonly counts: Manifest["counts"] = { kept: 0, rejected: 0, byFilter: {} };
  /** Ids of stored records and rejections. */
  readonly ids = new Set<string>();
  /** Inputs marked finished in done-items.jsonl. */
  readonly doneItems = new Set<string>();
  /** Filters of the counted retryable rejections of each unfinished input, uncounted once the input finishes. */
  private readonly retryable = new Map<string, string[]>();

  isDone(id: string): boolean {
    return this.ids.has(id) || this.doneItems.has(id);
  }

  /** Count a kept record; false (and nothing counted) when its id was seen. */
  addKept(record: { id: string }): boolean {
    if (this.ids.has(record.id)) return false;
    this.ids.add(record.id);
    this.counts.kept++;
    this.finished(record.id);
    return true;
  }

  addDoneItem(id: string): void {
    this.doneItems.add(id);
    this.finished(id);
  }

  /** An input finished: its retryable rejections stop counting, as they would when the files are read again. */
  private finished(id: string): void {
    const filters = this.retryable.get(id);
    if (!filters) return;
    this.retryable.delete(id);
    for (const filter of filters) {
      this.counts.rejected--;
      const left = (this.counts.byFilter[filter] ?? 1) - 1;
      if (left > 0) this.counts.byFilter[filter] = left;
      else delete this.counts.byFilter[filter];
    }
  }

  /** Count a rejected record under its filter; false (and nothing counted) when its id was seen. */
  addRejected(record: { id: string; filter?: unknown; retryOf?: unknown }): boolean {
    if (this.ids.has(record.id)) return false;
    this.ids.add(record.id);
    if (typeof record.retryOf === "string" && this.isDone(record.retryOf)) return true;
    this.counts.rejected++;
    const filter = typeof record.filter === "string" ? record.filter : "unknown";
    this.counts.byFilter[filter] = (this.counts.byFilter[filter] ?? 0) + 1;
    if (typeof record.retryOf === "string") {
      const filters = this.retryable.get(record.retryOf) ?? [];
      filters.push(filter);
      this.retryable.set(record.retryOf, filters);
    }
    return true;
  }
}
