/**
 * Rows of a Parquet file (what the Hugging Face hub serves datasets as), read with hyparquet (pure JavaScript).
 * 64-bit integers come back as numbers, so rows validate like JSON.
 */
import { stat } from "node:fs/promises";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { ConfigError } from "../../errors/index.js";

/** BigInt (Parquet INT64) to number, recursively through arrays and objects. */
function plain(value: unknown): unknown {
  if (typeof value === "bigint") return Number(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object" && !(value instanceof Uint8Array))
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, plain(inner)]));
  return value;
}

/** Every row of the Parquet file at `path` as a plain object; a missing or non-Parquet file is a ConfigError. */
export async function readParquetRows(path: string, expected: string): Promise<Array<Record<string, unknown>>> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") throw new ConfigError(`file not found; expected ${expected}`, { path });
    throw error;
  });
  if (info.isDirectory()) throw new ConfigError(`is a folder; expected a file with ${expected}`, { path });
  try {
    const file = await asyncBufferFromFile(path);
    const rows = await parquetReadObjects({ file });
    return rows.map((row) => plain(row) as Record<string, unknown>);
  } catch (error) {
    throw new ConfigError(
      `could not be read as Parquet (${error instanceof Error ? error.message : String(error)}); expected ${expected}`,
      { path, cause: error },
    );
  }
}
