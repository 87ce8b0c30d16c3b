/**
 * Export a stage's kept records as a dataset folder: records.parquet and its dataset card (README.md), read from the
 * merged stage folder when there is one, else from all its shards. Written to `<run>/exports/<stage>/` by default, so
 * the run's own files stay as they are.
 */
import { basename, join, resolve } from "node:path";
import { ConfigError } from "../errors/index.js";
import { packageVersion } from "../package-root.js";
import { listStages } from "../run-store/run-status.js";
import { readRunInfo } from "../run-store/run.js";
import { readStageRecords } from "../stages/shared/stage-records.js";
import { writeParquetDataset } from "./write-dataset.js";

export interface ExportStageOptions {
  /** Folder to write. Default `<run>/exports/<stage>`. */
  out?: string;
  /** The command line, named in the dataset card. Default: "not recorded". */
  command?: string;
}

export interface ExportStageResult {
  dir: string;
  parquet: string;
  card: string;
  records: number;
}

/** What the fields every stage writes hold, for the dataset card (stage-specific fields are listed by type). */
const recordFieldDescriptions: Record<string, string> = {
  id: "deterministic id: a hash of what the record was made from, the same in every rerun",
  parentId: "id of the record or round this one was made from",
  instruction: "the task or question (Alpaca field name)",
  input: 'context or data that follows the instruction ("" when none)',
  output: "the answer",
  source: "the stage (or file) the prompt came from",
  backend: "the model backend that generated the record",
};

/** Write the kept records of `stage` in the run at `runDir` as Parquet with a dataset card. */
export async function exportStage(
  runDir: string,
  stage: string,
  options: ExportStageOptions = {},
): Promise<ExportStageResult> {
  const stages = (await listStages(runDir)).map((status) => status.stage);
  if (!stages.includes(stage)) {
    throw new ConfigError(
      `has no stage "${stage}"; stages in this run: ${stages.length ? stages.join(", ") : "none yet"}`,
      { path: runDir, field: "stage" },
    );
  }
  const records = await readStageRecords(runDir, stage);
  if (records.length === 0)
    throw new ConfigError(`stage "${stage}" has no kept records to export yet`, { path: join(runDir, stage) });
  const info = await readRunInfo(runDir);
  const dir = resolve(options.out ?? join(runDir, "exports", stage));
  const written = await writeParquetDataset(dir, {
    title: `${stage} records of run ${basename(resolve(runDir))}`,
    summary:
      `The records kept by selfalign's \`${stage}\` stage (${records.length}), one row per record, ` +
      "with the fields the stage writes.",
    files: [{ config: stage, file: "records.parquet", rows: records }],
    fieldDescriptions: recordFieldDescriptions,
    ...(info?.constitutionHash ? { constitutionHash: info.constitutionHash } : {}),
    ...(options.command ? { command: options.command } : {}),
    provenance: {
      "selfalign version": packageVersion(),
      ...Object.fromEntries(Object.entries(info?.backends ?? {}).map(([role, spec]) => [`${role} backend`, spec])),
      ...(info?.createdAt ? { "run started": info.createdAt } : {}),
    },
  });
  return { dir, parquet: written.parquet[0]!, card: written.card, records: records.length };
}
