/** Reading a stage's records as the next stage's input: the merged (unsharded) folder when present, else all shards. */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { readJsonl, type StoreRecord } from "../../run-store/jsonl.js";
import { readStageAcrossShards } from "../../run-store/run-status.js";
import { stageFiles } from "../../run-store/stage-store.js";

export async function readStageRecords<T extends { id: string } = StoreRecord>(
  runDir: string,
  stage: string,
): Promise<T[]> {
  const merged = join(runDir, stage, stageFiles.records);
  const exists = await access(merged).then(
    () => true,
    () => false,
  );
  if (exists) return (await readJsonl<T>(merged)).records;
  return (await readStageAcrossShards<T>(runDir, stage)).records;
}
