/**
 * `selfalign merge`: join a stage's shards into its unsharded folder and re-apply the global rules the shards could
 * not see: ROUGE-L dedup across all self-instruct shards (the reference only removed exact duplicates across
 * shards, method-spec A.11.8), one question per (type, topic) for red-team, one answer per prompt for self-align.
 */
import { join } from "node:path";
import type { SeedTask } from "../../constitution/constitution-schema.js";
import { ConfigError } from "../../errors/index.js";
import { readManifest } from "../../run-store/manifest.js";
import { readStageAcrossShards } from "../../run-store/run-status.js";
import type { Run } from "../../run-store/run.js";
import type { StoreRecord } from "../../run-store/jsonl.js";
import { DedupIndex } from "../../text/dedup-index.js";
import { countPrincipleUsage } from "../self-align/principle-usage.js";
import { stageSettingsOf } from "./stage-settings.js";

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
  // Shards run with other settings (`selfalign stage` keeps them in each folder's manifest) must not be mixed.
  const settingsByShard = new Map<string, string[]>();
  for (const part of shardParts) {
    const settings = stageSettingsOf(await readManifest(join(part.dir, "manifest.json")));
    if (settings === undefined) continue;
    const text = JSON.stringify(settings);
    settingsByShard.set(text, [...(settingsByShard.get(text) ?? []), part.dir]);
  }
  if (settingsByShard.size > 1) {
    throw new ConfigError(
      `the shards of "${stage}" were made with different settings: ${[...settingsByShard].map(([settings, dirs]) => `${dirs.join(", ")}: ${settings}`).join("; ")}. Re-run the odd shards with the same settings before merging`,
      { path: run.dir },
    );
  }
  // The unsharded folder is the merge output and is read first: its records are the earlier merges' result. Shard
  // records follow in shard order, then file order; those it already holds (kept or dropped) are skipped.
  const store = await run.stage(stage);
  const merged: StoreRecord[] = [];
  const shardRecords: StoreRecord[] = [];
  for (const record of across.records) (store.isDone(record.id) ? merged : shardRecords).push(record);
  const rule = mergeRule(stage, merged, options);
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
  if (stage === "self-align") {
    store.manifest.extra.principleUsage = countPrincipleUsage(
      merged as Array<{ citedPrinciples: string[] } & StoreRecord>,
      options.principleIds ?? [],
    );
  }
  store.manifest.extra.mergedFrom = shardParts.map((part) => part.dir);
  const [shared] = settingsByShard.keys();
  if (shared !== undefined) store.manifest.extra.settings = JSON.parse(shared);
  await store.saveManifest();
  return {
    shards: shardParts.length,
    read: shardRecords.length,
    kept: shardRecords.length - dropped,
    dropped,
    missingShards: across.missingShards,
  };
}

/** A global rule the shards could not apply: `check` a shard record, `add` it once kept. */
interface MergeRule {
  check(record: StoreRecord): { filter: string; reason: string } | undefined;
  add(record: StoreRecord): void;
}

/** The stage's merge rule, seeded with the records merged so far. */
function mergeRule(stage: string, merged: readonly StoreRecord[], options: MergeStageOptions): MergeRule {
  if (stage === "self-instruct") {
    const instruction = (record: StoreRecord) => String(record.instruction ?? "");
    const index = new DedupIndex({ threshold: options.dedupThreshold ?? 0.7 });
    for (const task of options.seedTasks ?? []) index.add(task.instruction, `seed:${task.id}`);
    for (const record of merged) index.add(instruction(record), record.id);
    return {
      check: (record) => {
        const check = index.check(instruction(record));
        if (check.keep) return undefined;
        return {
          filter: "merge-rouge-dedup",
          reason: `ROUGE-L ${check.maxScore.toFixed(3)} > ${index.threshold} with ${check.nearest} from another shard`,
        };
      },
      add: (record) => index.add(instruction(record), record.id),
    };
  }
  const redTeam = stage === "red-team";
  const keyOf = (record: StoreRecord) =>
    redTeam
      ? `${String(record.questionType)}\u0000${String(record.topic).toLowerCase()}`
      : String(record.parentId ?? record.id);
  const reason = redTeam
    ? "another shard already has a question for this type and topic"
    : "another shard already answered this prompt";
  const seen = new Set(merged.map(keyOf));
  return {
    check: (record) => (seen.has(keyOf(record)) ? { filter: "merge-duplicate", reason } : undefined),
    add: (record) => seen.add(keyOf(record)),
  };
}
