/**
 * The run store: run directories, stage record files, manifests, resume, locks and shards.
 *
 * ```
 * <run>/run.json                    resolved config, constitution hash, backend ids, versions
 * <run>/.lock                       pid + hostname of the writer (.lock-shard-i-of-n when a shard is locked)
 * <run>/<stage>/records.jsonl       kept records, one JSON object per line, each with a deterministic `id`
 * <run>/<stage>/rejected.jsonl      rejected records with `filter` and `reason`
 * <run>/<stage>/done-items.jsonl    inputs finished whose outputs carry other ids (resume bookkeeping)
 * <run>/<stage>/manifest.json       counts (recomputed from the files on open), token usage, timings, extra
 * <run>/<stage>/shard-i-of-n/...    the same files for one shard (`--shard i/n`)
 * ```
 */
export {
  JsonlAppender,
  type ReadJsonlOptions,
  type ReadJsonlResult,
  type RejectedRecord,
  readJsonl,
  type StoreRecord,
  scanJsonl,
} from "./jsonl.js";
export { acquireLock, type LockInfo, type LockState, readLock, releaseLock } from "./lock.js";
export {
  emptyManifest,
  type Manifest,
  manifestSchema,
  RecordTally,
  readManifest,
  sumManifests,
  writeJsonAtomic,
} from "./manifest.js";
export {
  type ItemResult,
  type ProcessItemsOptions,
  type ProcessItemsResult,
  processItems,
} from "./process-items.js";
export { canonicalJson, recordId } from "./record-id.js";
export {
  type OpenRunOptions,
  openRun,
  Run,
  type RunInfo,
  readRunInfo,
  runFiles,
  runInfoSchema,
} from "./run.js";
export {
  listStages,
  type RunStatus,
  readRunStatus,
  readStageAcrossShards,
  readStageStatus,
  type StagePart,
  type StageRecordsAcrossShards,
  type StageStatus,
} from "./run-status.js";
export { formatShard, inShard, parseShard, parseShardDirName, type Shard, shardDirName } from "./shard.js";
export { checkStageName, StageStore, type StageStoreOptions, stageFiles } from "./stage-store.js";
