/**
 * A run directory: run.json (resolved config, constitution hash, backends, versions), one folder per stage, and
 * the lock that stops two processes writing one run.
 */
import { mkdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { readJsonFile } from "./json-file.js";
import { acquireLock, type LockInfo, releaseLock } from "./lock.js";
import { writeJsonAtomic } from "./manifest.js";
import { formatShard, type Shard, shardDirName } from "./shard.js";
import { StageStore, type StageStoreOptions } from "./stage-store.js";

export const runInfoSchema = z.looseObject({
  /** The resolved configuration the run was started with. */
  config: z.unknown(),
  /** Content hash of the constitution used. */
  constitutionHash: z.string().optional(),
  /** Backend ids by role, e.g. `{ generator: "llama-cpp:models/base.gguf" }`. */
  backends: z.record(z.string(), z.string()).optional(),
  /** Versions of selfalign, node and engines. */
  versions: z.record(z.string(), z.string()).optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});
export type RunInfo = z.infer<typeof runInfoSchema>;

export const runFiles = { info: "run.json", lock: ".lock" } as const;

export interface OpenRunOptions {
  /** Create the directory when missing. Default false (a missing run is an error). */
  create?: boolean;
  /**
   * Lock only this shard (lock file `.lock-shard-i-of-n`), so the shards of one run can be written at once by
   * different processes sharing the directory. Default: the whole run (`.lock`).
   */
  shard?: Shard;
}

export class Run {
  private readonly stages = new Map<string, StageStore>();
  private closed = false;
  /** Told of every request's tokens written to a usage ledger of this run (stages opened after it is set). */
  onUsage?: (usage: import("../backends/language-model.js").TokenUsage) => void;

  constructor(
    /** Absolute path of the run directory. */
    readonly dir: string,
    readonly lockPath: string,
    private readonly lock: LockInfo,
    /** The shard this process locked (see `OpenRunOptions.shard`); undefined when it locked the whole run. */
    readonly shard?: Shard,
  ) {}

  get runJsonPath(): string {
    return join(this.dir, runFiles.info);
  }

  /** Write run.json (atomically); `createdAt` of an existing run.json is kept. */
  async writeRunJson(info: RunInfo): Promise<void> {
    const previous = await this.readRunJson();
    const now = new Date().toISOString();
    await writeJsonAtomic(this.runJsonPath, {
      ...info,
      versions: { node: process.version, ...info.versions },
      createdAt: previous?.createdAt ?? info.createdAt ?? now,
      updatedAt: now,
    });
  }

  async readRunJson(): Promise<RunInfo | undefined> {
    return readRunInfo(this.dir);
  }

  /** Open a stage for writing (the same instance for the same stage and shard). */
  async stage(name: string, options: StageStoreOptions = {}): Promise<StageStore> {
    if (this.closed) throw new ConfigError(`run ${this.dir} is closed; open it again to write stage ${name}`);
    if (this.shard && options.shard && shardDirName(this.shard) !== shardDirName(options.shard)) {
      throw new ConfigError(
        `stage ${name}: this process locked shard ${formatShard(this.shard)} of the run, so it cannot write shard ` +
          `${formatShard(options.shard)}; open the run with that shard`,
        { path: this.dir },
      );
    }
    const key = options.shard ? `${name}/${shardDirName(options.shard)}` : name;
    let store = this.stages.get(key);
    if (!store) {
      const onUsage = this.onUsage;
      store = await StageStore.open(
        this.dir,
        name,
        onUsage ? { ...options, onUsage: (usage) => onUsage(usage) } : options,
      );
      this.stages.set(key, store);
    }
    return store;
  }

  /** Save every open stage's manifest, close its files and release the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      for (const store of this.stages.values()) await store.close();
    } finally {
      await releaseLock(this.lockPath, this.lock);
    }
  }
}

/** Lock file name for the whole run or one shard of it. */
function lockFileName(shard?: Shard): string {
  return shard ? `${runFiles.lock}-${shardDirName(shard)}` : runFiles.lock;
}

/** Open a run directory for writing, taking its lock (a stale lock of a dead process is taken over). */
export async function openRun(dir: string, options: OpenRunOptions = {}): Promise<Run> {
  const absolute = resolve(dir);
  await checkRunDir(absolute, options.create ?? false);
  const lockPath = join(absolute, lockFileName(options.shard));
  const lock = await acquireLock(lockPath, absolute);
  return new Run(absolute, lockPath, lock, options.shard);
}

async function checkRunDir(dir: string, create: boolean): Promise<void> {
  try {
    const info = await stat(dir);
    if (!info.isDirectory()) throw new ConfigError("is a file, not a run directory; give a directory", { path: dir });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    if (!create) {
      throw new ConfigError("run directory does not exist; check the path, or start the run first", { path: dir });
    }
    await mkdir(dir, { recursive: true });
  }
}

/** Read a run's run.json without opening (locking) the run; undefined when there is none. */
export async function readRunInfo(dir: string): Promise<RunInfo | undefined> {
  const path = join(dir, runFiles.info);
  const value = await readJsonFile(path);
  if (value === undefined) return undefined;
  const parsed = runInfoSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`not a valid run.json: ${issue?.message}`, { path, field: issue?.path.join(".") });
  }
  return parsed.data;
}
