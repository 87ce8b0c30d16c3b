/**
 * One stage's output in a run: records.jsonl, rejected.jsonl and manifest.json (in a shard-i-of-n folder when
 * sharded). The files are the truth: on open, a torn last line is cut away and the counts are recomputed.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { ZodType } from "zod";
import type { TokenUsage } from "../backends/language-model.js";
import { ConfigError } from "../errors/index.js";
import { JsonlAppender, type RejectedRecord, readJsonl, type StoreRecord, scanJsonl } from "./jsonl.js";
import { addUsage, emptyManifest, type Manifest, RecordTally, readManifest, writeJsonAtomic } from "./manifest.js";
import { type ProcessItemsOptions, type ProcessItemsResult, processItems } from "./process-items.js";
import { formatShard, type Shard, shardDirName } from "./shard.js";

export const stageFiles = {
  records: "records.jsonl",
  rejected: "rejected.jsonl",
  /** Ids of processed inputs whose outputs carry other ids (so resume knows the input is finished). */
  doneItems: "done-items.jsonl",
  manifest: "manifest.json",
} as const;

export interface StageStoreOptions {
  /** Write this shard's slice only, into `<stage>/shard-<i>-of-<n>/`. */
  shard?: Shard;
}

/** Names usable as a stage folder: letters, digits, `-`, `_`, `.`; not `shard-*`. */
export function checkStageName(stage: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(stage) || stage.startsWith("shard-")) {
    throw new ConfigError(
      `stage name "${stage}" cannot be a folder name; use letters, digits, "-", "_" or "." (e.g. "self-align")`,
      { field: "stage" },
    );
  }
}

export class StageStore {
  /** The stage's manifest; counts are kept in sync by the append methods; `saveManifest` writes it. */
  readonly manifest: Manifest;
  /** Problems found and repaired on open (torn last lines), for the caller to report. */
  readonly warnings: string[];
  readonly recordsPath: string;
  readonly rejectedPath: string;
  readonly manifestPath: string;
  private readonly doneItemsPath: string;
  private readonly storedIds: Set<string>;
  private readonly doneItems: Set<string>;
  private readonly records: JsonlAppender;
  private readonly rejected: JsonlAppender;
  private readonly doneItemsFile: JsonlAppender;
  private readonly openedAt = Date.now();
  private readonly secondsBefore: number;
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    readonly stage: string,
    readonly dir: string,
    readonly shard: Shard | undefined,
    state: {
      manifest: Manifest;
      warnings: string[];
      storedIds: Set<string>;
      doneItems: Set<string>;
    },
  ) {
    this.manifest = state.manifest;
    this.warnings = state.warnings;
    this.storedIds = state.storedIds;
    this.doneItems = state.doneItems;
    this.secondsBefore = state.manifest.timings.seconds;
    this.recordsPath = join(dir, stageFiles.records);
    this.rejectedPath = join(dir, stageFiles.rejected);
    this.manifestPath = join(dir, stageFiles.manifest);
    this.doneItemsPath = join(dir, stageFiles.doneItems);
    this.records = new JsonlAppender(this.recordsPath);
    this.rejected = new JsonlAppender(this.rejectedPath);
    this.doneItemsFile = new JsonlAppender(this.doneItemsPath);
  }

  /** Open (creating) a stage folder for writing. Call through `Run.stage`, which holds the run lock. */
  static async open(runDir: string, stage: string, options: StageStoreOptions = {}): Promise<StageStore> {
    checkStageName(stage);
    const shard = options.shard;
    const dir = shard ? join(runDir, stage, shardDirName(shard)) : join(runDir, stage);
    await mkdir(dir, { recursive: true });
    const warnings: string[] = [];
    const scan = async (name: string, visit: (record: StoreRecord) => void) => {
      const path = join(dir, name);
      const result = await scanJsonl<StoreRecord>(path, visit, { repair: true });
      if (result.tornLines > 0) {
        warnings.push(`${path}: dropped a torn last line left by an interrupted write (it will be redone)`);
      }
    };
    const tally = new RecordTally();
    await scan(stageFiles.records, (record) => tally.addKept(record));
    await scan(stageFiles.rejected, (record) => tally.addRejected(record));
    const doneItems = new Set<string>();
    await scan(stageFiles.doneItems, (record) => doneItems.add(record.id));
    const manifest = (await readManifest(join(dir, stageFiles.manifest))) ?? emptyManifest(stage);
    manifest.stage = stage;
    if (shard) manifest.shard = { ...shard };
    manifest.counts = tally.counts;
    return new StageStore(stage, dir, shard, { manifest, warnings, storedIds: tally.ids, doneItems });
  }

  /** Ids already finished: every record and rejected record, and inputs marked done. A snapshot. */
  doneIds(): Set<string> {
    return new Set([...this.storedIds, ...this.doneItems]);
  }

  /** Whether `id` is finished (cheaper than `doneIds().has(id)`). */
  isDone(id: string): boolean {
    return this.storedIds.has(id) || this.doneItems.has(id);
  }

  /** Append a kept record as one line. Returns false (and writes nothing) when a record with its id is stored. */
  async appendRecord(record: StoreRecord): Promise<boolean> {
    if (this.storedIds.has(record.id)) return false;
    this.records.append(record);
    this.storedIds.add(record.id);
    this.manifest.counts.kept++;
    return true;
  }

  /** Append a rejected record (with the filter that rejected it and why). Returns false when its id is stored. */
  async appendRejected(record: RejectedRecord): Promise<boolean> {
    if (typeof record.filter !== "string" || record.filter === "" || typeof record.reason !== "string") {
      throw new ConfigError(
        `rejected record ${record.id} needs a "filter" name and a "reason" (got filter ${JSON.stringify(record.filter)})`,
        { path: this.rejectedPath, recordId: record.id, field: "filter" },
      );
    }
    if (this.storedIds.has(record.id)) return false;
    this.rejected.append(record);
    this.storedIds.add(record.id);
    const counts = this.manifest.counts;
    counts.rejected++;
    counts.byFilter[record.filter] = (counts.byFilter[record.filter] ?? 0) + 1;
    return true;
  }

  /** Mark an input as finished when none of its outputs carries its id (used by `processItems`). */
  async markDone(id: string): Promise<void> {
    if (this.isDone(id)) return;
    this.doneItemsFile.append({ id });
    this.doneItems.add(id);
  }

  async readRecords<T = StoreRecord>(schema?: ZodType<T>): Promise<T[]> {
    return (await readJsonl<T>(this.recordsPath, { schema })).records;
  }

  async readRejected<T = RejectedRecord>(schema?: ZodType<T>): Promise<T[]> {
    return (await readJsonl<T>(this.rejectedPath, { schema })).records;
  }

  addUsage(usage: TokenUsage): void {
    addUsage(this.manifest.usage, usage);
  }

  /** Rewrite manifest.json atomically (temporary file + rename). */
  async saveManifest(): Promise<void> {
    // Saves are queued: two overlapping tmp + rename pairs could otherwise leave an older manifest last.
    const save = async () => {
      const now = Date.now();
      this.manifest.timings.updatedAt = new Date(now).toISOString();
      this.manifest.timings.seconds = this.secondsBefore + (now - this.openedAt) / 1000;
      await writeJsonAtomic(this.manifestPath, this.manifest);
    };
    const next = this.saving.then(save, save);
    this.saving = next;
    await next;
  }

  /** Run `process` over the inputs of this shard not yet done, appending results as they finish. See processItems. */
  processItems<I extends { id: string }, R extends StoreRecord>(
    options: ProcessItemsOptions<I, R>,
  ): Promise<ProcessItemsResult> {
    return processItems(this, options);
  }

  /** Label for messages: `self-align` or `self-align (shard 0/2)`. */
  get label(): string {
    return this.shard ? `${this.stage} (shard ${formatShard(this.shard)})` : this.stage;
  }

  /** Save the manifest and close the files. */
  async close(): Promise<void> {
    await this.saveManifest();
    this.records.close();
    this.rejected.close();
    this.doneItemsFile.close();
  }
}
