/**
 * A dataset folder the Hugging Face hub takes as it is: one Parquet file per config and the dataset card
 * (README.md) that lists them, their fields, counts and provenance.
 */
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type DatasetCardOptions, renderDatasetCard } from "./dataset-card.js";
import { type ParquetColumn, writeParquetRows } from "./write-parquet.js";

export interface ParquetDatasetFile {
  /** Config name on the hub. */
  config: string;
  /** File name inside the folder (`messages.parquet`). */
  file: string;
  rows: readonly Record<string, unknown>[];
  /** Default: inferred from the rows (give them when there may be no rows). */
  columns?: readonly ParquetColumn[];
  /** The config opened when none is named. Default: the first file. */
  default?: boolean;
}

export interface WriteParquetDatasetOptions extends Omit<DatasetCardOptions, "files"> {
  files: readonly ParquetDatasetFile[];
}

export interface WriteParquetDatasetResult {
  /** Paths of the Parquet files, in the order given. */
  parquet: string[];
  card: string;
}

/** Footer metadata key of the constitution hash in every Parquet file written here. */
export const constitutionHashMetadataKey = "selfalign.constitution_hash";

/** Write each file as Parquet into `dir` (created when missing), then README.md describing them. */
export async function writeParquetDataset(
  dir: string,
  options: WriteParquetDatasetOptions,
): Promise<WriteParquetDatasetResult> {
  await mkdir(dir, { recursive: true });
  const metadata: Record<string, string> = options.constitutionHash
    ? { [constitutionHashMetadataKey]: options.constitutionHash }
    : {};
  const written = [];
  for (const file of options.files) {
    const result = await writeParquetRows(join(dir, file.file), file.rows, {
      ...(file.columns ? { columns: file.columns } : {}),
      metadata,
    });
    written.push({ ...file, rows: result.rows, columns: result.columns });
  }
  const card = join(dir, "README.md");
  await writeFile(`${card}.partial`, renderDatasetCard({ ...options, files: written }));
  await rename(`${card}.partial`, card);
  return { parquet: written.map((file) => join(dir, file.file)), card };
}
