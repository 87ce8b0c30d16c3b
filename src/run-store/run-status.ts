/**
 * Reading a run without writing to it (no lock): every stage's counts and manifest for `selfalign status` and the
 * report, and a stage's records across all its shards for `selfalign merge`.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ZodType } from "zod";
import { type RejectedRecord, readJsonl, type StoreRecord } from "./jsonl.js";
import { type LockState, readLock } from "./lock.js";
import { type Manifest, sumManifests } from "./manifest.js";
import { type RunInfo, readRunInfo, runFiles } from "./run.js";
import { parseShardDirName, type Shard } from "./shard.js";
import { readStageFolder, stageFiles } from "./stage-store.js";

/** One folder holding records: the stage folder itself, or one of its shard folders. */
export interface StagePart {
  dir: string;
  /** Undefined for the unsharded stage folder. */
  shard?: Shard;
  /** The saved manifest with counts recomputed from the files (they are the truth). */
  manifest: Manifest;
  /** 1 when a torn last line was found (it is ignored here; the next writer cuts it away). */
  tornLines: number;
}

export interface StageStatus {
  stage: string;
  /** The stage as a whole: the parts' manifests summed. */
  manifest: Manifest;
  parts: StagePart[];
  /** Shard counts seen among the parts (e.g. [4]); empty when the stage is not sharded. */
  shardCounts: number[];
  /** Shards of each shard count that have no folder yet, as "i/n". */
  missingShards: string[];
}

export interface RunStatus {
  dir: string;
  info?: RunInfo;
  stages: StageStatus[];
  /** Lock files present (run lock and shard locks), with whether their holders are alive. */
  locks: LockState[];
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

function hasStageFiles(names: string[]): boolean {
  return names.some(
    (name) => name === stageFiles.records || name === stageFiles.rejected || name === stageFiles.manifest,
  );
}

async function readPartRecords<R, J>(
  dir: string,
  schemas: { record?: ZodType<R>; rejected?: ZodType<J> } = {},
): Promise<{ records: R[]; rejected: J[]; tornLines: number }> {
  const records = await readJsonl<R>(join(dir, stageFiles.records), { schema: schemas.record });
  const rejected = await readJsonl<J>(join(dir, stageFiles.rejected), { schema: schemas.rejected });
  return { records: records.records, rejected: rejected.records, tornLines: records.tornLines + rejected.tornLines };
}

async function readPart(stage: string, dir: string, shard?: Shard): Promise<StagePart> {
  // Counts come from the files: a run killed before saving its manifest still shows truly.
  const { manifest, tornFiles } = await readStageFolder(dir, stage);
  return { dir, ...(shard ? { shard } : {}), manifest, tornLines: tornFiles.length };
}

/** The folders of one stage that hold records: the stage folder (when it has files) and each shard folder. */
async function stagePartDirs(runDir: string, stage: string): Promise<Array<{ dir: string; shard?: Shard }>> {
  const stageDir = join(runDir, stage);
  const names = await entries(stageDir);
  const parts: Array<{ dir: string; shard?: Shard }> = [];
  if (hasStageFiles(names)) parts.push({ dir: stageDir });
  for (const name of names) {
    const shard = parseShardDirName(name);
    if (shard && (await isDirectory(join(stageDir, name)))) parts.push({ dir: join(stageDir, name), shard });
  }
  parts.sort((a, b) => (a.shard?.count ?? 0) - (b.shard?.count ?? 0) || (a.shard?.index ?? 0) - (b.shard?.index ?? 0));
  return parts;
}

function missingShards(parts: Array<{ shard?: Shard }>): { shardCounts: number[]; missing: string[] } {
  const shardCounts = [...new Set(parts.flatMap((part) => (part.shard ? [part.shard.count] : [])))].sort(
    (a, b) => a - b,
  );
  const missing: string[] = [];
  for (const count of shardCounts) {
    for (let index = 0; index < count; index++) {
      if (!parts.some((part) => part.shard?.count === count && part.shard.index === index)) {
        missing.push(`${index}/${count}`);
      }
    }
  }
  return { shardCounts, missing };
}

/** Status of one stage (all its parts). */
export async function readStageStatus(runDir: string, stage: string): Promise<StageStatus> {
  const parts: StagePart[] = [];
  for (const part of await stagePartDirs(runDir, stage)) parts.push(await readPart(stage, part.dir, part.shard));
  const { shardCounts, missing } = missingShards(parts);
  return {
    stage,
    manifest: sumManifests(
      stage,
      parts.map((part) => part.manifest),
    ),
    parts,
    shardCounts,
    missingShards: missing,
  };
}

/** Every stage of a run (folders holding records, directly or in shard folders), oldest first. */
export async function listStages(runDir: string): Promise<StageStatus[]> {
  const stages: StageStatus[] = [];
  for (const name of await entries(runDir)) {
    if (name.startsWith(".") || !(await isDirectory(join(runDir, name)))) continue;
    if ((await stagePartDirs(runDir, name)).length === 0) continue;
    stages.push(await readStageStatus(runDir, name));
  }
  return stages.sort(
    (a, b) =>
      a.manifest.timings.startedAt.localeCompare(b.manifest.timings.startedAt) || a.stage.localeCompare(b.stage),
  );
}

/** run.json, every stage, and the locks present. Reads only; takes no lock. */
export async function readRunStatus(runDir: string): Promise<RunStatus> {
  const locks: LockState[] = [];
  for (const name of await entries(runDir)) {
    if (name !== runFiles.lock && !name.startsWith(`${runFiles.lock}-shard-`)) continue;
    if (name.endsWith(".tmp") || name.includes(".stale-")) continue;
    const state = await readLock(join(runDir, name));
    if (state) locks.push(state);
  }
  const info = await readRunInfo(runDir);
  return { dir: runDir, ...(info ? { info } : {}), stages: await listStages(runDir), locks };
}

export interface StageRecordsAcrossShards<R, J> {
  records: R[];
  rejected: J[];
  /** The folders read, in order (unsharded folder first, then shards by index). */
  parts: Array<{ dir: string; shard?: Shard }>;
  shardCounts: number[];
  /** Shards that have no folder ("i/n"); a merge should refuse or warn. */
  missingShards: string[];
  /** Records dropped because an earlier part already held their id (e.g. shards of different counts). */
  duplicates: number;
  tornLines: number;
}

/** Read a stage's records and rejected records from its folder and all its shard folders, deduplicated by id. */
export async function readStageAcrossShards<
  R extends { id: string } = StoreRecord,
  J extends { id: string } = RejectedRecord,
>(
  runDir: string,
  stage: string,
  schemas: { record?: ZodType<R>; rejected?: ZodType<J> } = {},
): Promise<StageRecordsAcrossShards<R, J>> {
  const parts = await stagePartDirs(runDir, stage);
  const seen = new Set<string>();
  const { shardCounts, missing } = missingShards(parts);
  const result: StageRecordsAcrossShards<R, J> = {
    records: [],
    rejected: [],
    parts,
    shardCounts,
    missingShards: missing,
    duplicates: 0,
    tornLines: 0,
  };
  const keep = <T extends { id: string }>(target: T[], items: T[]) => {
    for (const item of items) {
      if (seen.has(item.id)) result.duplicates++;
      else {
        seen.add(item.id);
        target.push(item);
      }
    }
  };
  for (const part of parts) {
    const read = await readPartRecords<R, J>(part.dir, schemas);
    keep(result.records, read.records);
    keep(result.rejected, read.rejected);
    result.tornLines += read.tornLines;
  }
  return result;
}
