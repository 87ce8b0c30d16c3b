/**
 * `selfalign merge`: join a stage's shards into its unsharded folder and re-apply the global rules the shards could
 * not see: ROUGE-L dedup across all self-instruct shards (the reference only removed exact duplicates across
 * shards, method-spec A.11.8), one question per (type, topic) for red-team, one answer per prompt for self-align.
 */
import type { SeedTask } from "../../constitution/constitution-schema.js";
import { ConfigError } from "../../errors/index.js";
import { readStageAcrossShards } from "../../run-store/run-status.js";
import type { Run } from "../../run-store/run.js";
import type { StoreRecord } from "../../run-store/jsonl.js";
import { DedupIndex } from "../../text/dedup-index.js";
import { countPrincipleUsage } from "../self-align/principle-usage.js";

export interface MergeStageOptions {
  run: Run;
  stage: string;
  /** Seed tasks for the self-instruct dedup pool. */
  seedTasks?: readonly SeedTask[];
  /** Principle ids, to list unused principles in the merged usage counts. */
  principleIds?: readonly string[];
  dedupThreshold?: number;
}

export interface MergeStageResult {
  shards: number;
  read: number;
  kept: number;
  dropped: number;
  missingShards: string[];
}

export async function mergeStage(options: MergeStageOptions): Promise<MergeStageResult> {
  const { run, stage } = options;
  const across = await readStageAcrossShards<StoreRecord>(run.dir, stage);
  const shardParts = across.parts.filter((part) => part.shard !== undefined);
  if (shardParts.length === 0) {
    throw new ConfigError(
      `stage "${stage}" has no shard folders to merge in ${run.dir}; run it with --shard i/n first`,
      {
        path: run.dir,
      },
    );
  }
  // Shard records in shard order, then file order; the unsharded folder is the merge output.
  // A repeated merge skips what the unsharded folder already holds (kept or dropped).
  const store = await run.stage(stage);
  const already = store.doneIds();
  const shardRecords = across.records.filter((record) => !already.has(record.id));

  let dropped = 0;
  const keep = async (record: StoreRecord) => {
    await store.appendRecord(record);
  };
  const drop = async (record: StoreRecord, filter: string, reason: string) => {
    dropped++;
    await store.appendRejected({ ...record, filter, reason });
  };

  if (stage === "self-instruct") {
    const index = new DedupIndex({ threshold: options.dedupThreshold ?? 0.7 });
    for (const task of options.seedTasks ?? []) index.add(task.instruction, `seed:${task.id}`);
    for (const record of await store.readRecords()) index.add(String(record.instruction ?? ""), record.id);
    for (const record of shardRecords) {
      const check = index.check(String(record.instruction ?? ""));
      if (!check.keep) {
        await drop(
          record,
          "merge-rouge-dedup",
          `ROUGE-L ${check.maxScore.toFixed(3)} > ${index.threshold} with ${check.nearest} from another shard`,
        );
        continue;
      }
      index.add(String(record.instruction ?? ""), record.id);
      await keep(record);
    }
  } else {
    const keyOf = (record: StoreRecord) =>
      stage === "red-team"
        ? `${String(record.questionType)}\u0000${String(record.topic).toLowerCase()}`
        : String(record.parentId ?? record.id);
    const seen = new Set((await store.readRecords()).map(keyOf));
    for (const record of shardRecords) {
      const key = keyOf(record);
      if (seen.has(key)) {
        await drop(
          record,
          "merge-duplicate",
          stage === "red-team"
            ? "another shard already has a question for this type and topic"
            : "another shard already answered this prompt",
        );
        continue;
      }
      seen.add(key);
      await keep(record);
    }
  }
  if (stage === "self-align") {
    const records = await store.readRecords<{ citedPrinciples: string[]; questionType?: string } & StoreRecord>();
    store.manifest.extra.principleUsage = countPrincipleUsage(records, options.principleIds ?? []);
  }
  store.manifest.extra.mergedFrom = shardParts.map((part) => part.dir);
  await store.saveManifest();
  return {
    shards: shardParts.length,
    read: shardRecords.length,
    kept: shardRecords.length - dropped,
    dropped,
    missingShards: across.missingShards,
  };
}
