/**
 * `selfalign merge`: join a stage folder's shards into its unsharded folder and re-apply the global rules the shards
 * could not see, as the stage's definition states them (ROUGE-L dedup across self-instruct shards, one question per
 * (type, topic) for red-team, one answer per prompt for self-align). Without a rule, records are joined by id only,
 * so several samples of one prompt all stay.
 */
import type { Constitution } from "../../constitution/constitution-schema.js";
import { ConfigError } from "../../errors/index.js";
import type { MergeRule } from "../../pipeline/stage-definition.js";
import { defaultRegistry, type StageRegistry, stageOfFolder } from "../../pipeline/stage-registry.js";
import { sharedShardSettings, writeFolderSettings } from "../../pipeline/stage-settings.js";
import type { ZodType } from "zod";
import type { RejectedRecord, StoreRecord } from "../../run-store/jsonl.js";
import { readStageAcrossShards } from "../../run-store/run-status.js";
import type { Run } from "../../run-store/run.js";

export interface MergeStageOptions {
  run: Run;
  /** The folder to merge (a stage's folder, e.g. "self-align" or "red-team-topics"). */
  stage: string;
  constitution: Constitution;
  registry?: StageRegistry;
}

export interface MergeStageResult {
  shards: number;
  read: number;
  kept: number;
  dropped: number;
  missingShards: string[];
}

const joinById: MergeRule = { check: () => undefined, add: () => undefined };

export async function mergeStage(options: MergeStageOptions): Promise<MergeStageResult> {
  const { run, stage } = options;
  const found = stageOfFolder(options.registry ?? defaultRegistry, stage);
  const schemas = found
    ? { record: found.folder.kept as ZodType<StoreRecord>, rejected: found.folder.rejected as ZodType<RejectedRecord> }
    : {};
  const across = await readStageAcrossShards<StoreRecord>(run.dir, stage, schemas);
  const shardParts = across.parts.filter((part) => part.shard !== undefined);
  if (shardParts.length === 0) {
    throw new ConfigError(
      `stage "${stage}" has no shard folders to merge in ${run.dir}; run it with --shard i/n first`,
      {
        path: run.dir,
      },
    );
  }
  // Shards run with other settings must not be mixed; the merged folder takes the shards' settings.
  const shared = await sharedShardSettings(
    stage,
    shardParts.map((part) => part.dir),
  );
  // The unsharded folder is the merge output and is read first: its records are the earlier merges' result. Shard
  // records follow in shard order, then file order; those it already holds (kept or dropped) are skipped.
  const store = await run.stage(
    stage,
    found ? { schemas: { kept: found.folder.kept, rejected: found.folder.rejected } } : {},
  );
  const merged: StoreRecord[] = [];
  const shardRecords: StoreRecord[] = [];
  for (const record of across.records) (store.isDone(record.id) ? merged : shardRecords).push(record);
  const makeRule = found?.definition.merge?.[found.folder.name];
  const rule = makeRule
    ? makeRule({
        merged,
        constitution: options.constitution,
        ...(shared?.settings ? { settings: shared.settings } : {}),
      })
    : joinById;
  let dropped = 0;
  for (const record of shardRecords) {
    const rejection = rule.check(record);
    if (rejection) {
      dropped++;
      await store.appendRejected({ ...record, ...rejection });
      continue;
    }
    rule.add(record);
    await store.appendRecord(record);
    merged.push(record);
  }
  rule.finish?.(store, merged);
  store.manifest.extra.mergedFrom = shardParts.map((part) => part.dir);
  await store.saveManifest();
  if (shared?.settings) await writeFolderSettings(store.dir, shared.settings);
  return {
    shards: shardParts.length,
    read: shardRecords.length,
    kept: shardRecords.length - dropped,
    dropped,
    missingShards: across.missingShards,
  };
}
