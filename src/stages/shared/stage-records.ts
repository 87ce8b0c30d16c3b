/** Reading a stage's records as the next stage's input: the merged (unsharded) folder when present, else all shards. */
import { access } from "node:fs/promises";
import { join } from "node:path";
import type { ZodType } from "zod";
import { readJsonl, type StoreRecord } from "../../run-store/jsonl.js";
import { readStageAcrossShards } from "../../run-store/run-status.js";
import { stageFiles } from "../../run-store/stage-store.js";

/** Kept records of `folder`, each checked against `schema` when given (a bad line names file, line and field). */
export async function readStageRecords<T extends { id: string } = StoreRecord>(
  runDir: string,
  folder: string,
  schema?: ZodType,
): Promise<T[]> {
  const merged = join(runDir, folder, stageFiles.records);
  const exists = await access(merged).then(
    () => true,
    () => false,
  );
  const check = schema as ZodType<T> | undefined;
  if (exists) return (await readJsonl<T>(merged, check ? { schema: check } : {})).records;
  return (await readStageAcrossShards<T>(runDir, folder, check ? { record: check } : {})).records;
}
