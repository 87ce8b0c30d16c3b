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
  /** The token ledger: one line per paid request, written the moment its result arrives (survives any kill). */
  usage: "usage.jsonl",
} as const;

/** Schemas of a stage folder's kept and rejected records, checked on every write and read. */
export interface RecordSchemas {
  kept?: ZodType;
  rejected?: ZodType;
}

export interface StageStoreOptions {
  /** Write this shard's slice only, into `<stage>/shard-<i>-of-<n>/`. */
  shard?: Shard;
  /** Validate kept and rejected records on write and on read (a bad line names file, line and field). */
  schemas?: RecordSchemas;
  /** Told of every line written to the usage ledger, after it is written (a run's budget watches this). */
  onUsage?: (usage: TokenUsage) => void;
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

export interface StageFolder {
  /** The saved manifest (or an empty one) with counts recomputed from the record files. */
  manifest: Manifest;
  /** The counts (the same object as `manifest.counts`) and every stored id. */
  tally: RecordTally;
  /** Record files whose torn last line was ignored (and cut away with `repair`). */
  tornFiles: string[];
}

/**
 * Read a stage folder (the stage folder or one shard folder): its manifest, with counts recomputed from
 * records.jsonl, done-items.jsonl and rejected.jsonl and token usage from the usage ledger, streamed rather than held.
 * `repair` cuts a torn last line away (lock holders only).
 */
export async function readStageFolder(
  dir: string,
  stage: string,
  options: { repair?: boolean; schemas?: RecordSchemas } = {},
): Promise<StageFolder> {
  const tally = new RecordTally();
  const tornFiles: string[] = [];
  const scan = async (name: string, visit: (record: StoreRecord) => void, schema?: ZodType) => {
    const path = join(dir, name);
    const read = await scanJsonl<StoreRecord>(path, visit, {
      ...(options.repair ? { repair: true } : {}),
      ...(schema ? { schema: schema as ZodType<StoreRecord> } : {}),
    });
    if (read.tornLines > 0) tornFiles.push(path);
  };
  await scan(stageFiles.records, (record) => tally.addKept(record), options.schemas?.kept);
  // Finished inputs before rejections: a retryable rejection whose input has finished since is not counted.
  await scan(stageFiles.doneItems, (record) => tally.addDoneItem(record.id));
  await scan(stageFiles.rejected, (record) => tally.addRejected(record), options.schemas?.rejected);
  const ledger = emptyManifest(stage).usage;
  let ledgerLines = 0;
  await scan(stageFiles.usage, (line) => {
    ledgerLines++;
    addUsage(ledger, line as unknown as TokenUsage);
  });
  const manifest = (await readManifest(join(dir, stageFiles.manifest))) ?? emptyManifest(stage);
  manifest.counts = tally.counts;
  // Folders from before the ledger keep the usage their manifest saved.
  if (ledgerLines > 0) manifest.usage = ledger;
  return { manifest, tally, tornFiles };
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
  /** Counts of the stored records (`manifest.counts`), their ids and the finished inputs, kept up to date. */
  private readonly tally: RecordTally;
  private readonly schemas: RecordSchemas;
  private readonly records: JsonlAppender;
  private readonly rejected: JsonlAppender;
  private readonly doneItemsFile: JsonlAppender;
  private readonly usageFile: JsonlAppender;
  private usageLines = 0;
  private readonly openedAt = Date.now();
  private readonly onUsage: ((usage: TokenUsage) => void) | undefined;
  private readonly secondsBefore: number;
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    readonly stage: string,
    readonly dir: string,
    readonly shard: Shard | undefined,
    state: { manifest: Manifest; tally: RecordTally; warnings: string[]; schemas: RecordSchemas },
    onUsage?: (usage: TokenUsage) => void,
  ) {
    this.onUsage = onUsage;
    this.manifest = state.manifest;
    this.warnings = state.warnings;
    this.tally = state.tally;
    this.schemas = state.schemas;
    this.secondsBefore = state.manifest.timings.seconds;
    this.recordsPath = join(dir, stageFiles.records);
    this.rejectedPath = join(dir, stageFiles.rejected);
    this.manifestPath = join(dir, stageFiles.manifest);
    this.doneItemsPath = join(dir, stageFiles.doneItems);
    this.records = new JsonlAppender(this.recordsPath);
    this.rejected = new JsonlAppender(this.rejectedPath);
    this.doneItemsFile = new JsonlAppender(this.doneItemsPath);
    this.usageFile = new JsonlAppender(join(dir, stageFiles.usage));
  }

  /** Open (creating) a stage folder for writing. Call through `Run.stage`, which holds the run lock. */
  static async open(runDir: string, stage: string, options: StageStoreOptions = {}): Promise<StageStore> {
    checkStageName(stage);
    const shard = options.shard;
    const dir = shard ? join(runDir, stage, shardDirName(shard)) : join(runDir, stage);
    await mkdir(dir, { recursive: true });
    const schemas = options.schemas ?? {};
    const { manifest, tally, tornFiles } = await readStageFolder(dir, stage, { repair: true, schemas });
    const warnings = tornFiles.map(
      (path) => `${path}: dropped a torn last line left by an interrupted write (it will be redone)`,
    );
    manifest.stage = stage;
    if (shard) manifest.shard = { ...shard };
    return new StageStore(stage, dir, shard, { manifest, tally, warnings, schemas }, options.onUsage);
  }

  /** Ids already finished: every record and rejected record, and inputs marked done. A snapshot. */
  doneIds(): Set<string> {
    return new Set([...this.tally.ids, ...this.tally.doneItems]);
  }

  /** Whether `id` is finished (cheaper than `doneIds().has(id)`). */
  isDone(id: string): boolean {
    return this.tally.isDone(id);
  }

  /** Append a kept record as one line. Returns false (and writes nothing) when a record with its id is stored. */
  async appendRecord(record: StoreRecord): Promise<boolean> {
    if (this.tally.ids.has(record.id)) return false;
    this.check(record, this.schemas.kept, this.recordsPath);
    this.records.append(record);
    return this.tally.addKept(record);
  }

  /**
   * Append a rejected record (with the filter that rejected it and why). Returns false when its id is stored.
   * A rejection with `retryOf: <input id>` does not finish that input (see {@link RetryableRejection}).
   */
  async appendRejected(record: RejectedRecord): Promise<boolean> {
    if (typeof record.filter !== "string" || record.filter === "" || typeof record.reason !== "string") {
      throw new ConfigError(
        `rejected record ${record.id} needs a "filter" name and a "reason" (got filter ${JSON.stringify(record.filter)})`,
        { path: this.rejectedPath, recordId: record.id, field: "filter" },
      );
    }
    if (this.tally.ids.has(record.id)) return false;
    this.check(record, this.schemas.rejected, this.rejectedPath);
    this.rejected.append(record);
    return this.tally.addRejected(record);
  }

  /** Mark an input as finished when none of its outputs carries its id (used by `processItems`). */
  async markDone(id: string): Promise<void> {
    if (this.isDone(id)) return;
    this.doneItemsFile.append({ id });
    this.tally.addDoneItem(id);
  }

  /** The kept records, validated by the folder's schema (or `schema`). */
  async readRecords<T = StoreRecord>(schema?: ZodType<T>): Promise<T[]> {
    const check = schema ?? (this.schemas.kept as ZodType<T> | undefined);
    return (await readJsonl<T>(this.recordsPath, check ? { schema: check } : {})).records;
  }

  /**
   * Record the tokens of one request the moment its result arrives: one line of the folder's usage ledger, so what
   * was paid for survives a kill (the manifest's usage is recomputed from the ledger on open).
   */
  addUsage(usage: TokenUsage, requestId?: string): void {
    const line = {
      id: requestId ?? `request-${process.pid}-${this.openedAt}-${++this.usageLines}`,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      evaluatedPromptTokens: usage.evaluatedPromptTokens ?? usage.promptTokens,
      ...(usage.retries ? { retries: usage.retries } : {}),
    };
    this.usageFile.append(line);
    addUsage(this.manifest.usage, usage);
    this.onUsage?.(usage);
  }

  private check(record: StoreRecord, schema: ZodType | undefined, path: string): void {
    if (!schema) return;
    const parsed = schema.safeParse(record);
    if (parsed.success) return;
    const issue = parsed.error.issues[0];
    const field = issue?.path.join(".") ?? "";
    throw new ConfigError(
      `${this.label}: record ${record.id} does not match the stage's record schema${field ? ` at "${field}"` : ""}: ${issue?.message ?? "invalid"}`,
      { path, recordId: record.id, ...(field ? { field } : {}) },
    );
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
    this.usageFile.close();
  }
}
