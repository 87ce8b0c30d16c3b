/**
 * Rows of a data file in the containers the field ships datasets in: a JSON array, JSON Lines, or Parquet as the
 * Hugging Face hub serves it. Each row keeps where it was written, so a bad row's error names file, line and field.
 */
import { extname } from "node:path";
import { ConfigError } from "../errors/index.js";
import { jsonLayout } from "../eval/data/json-locate.js";
import { readParquetRows } from "../eval/data/parquet.js";
import { formatField, parseJsonLines, parseJsonText, readDataFile } from "../eval/data/read-data-file.js";

export const rowFileFormats = ["json", "jsonl", "parquet"] as const;
export type RowFileFormat = (typeof rowFileFormats)[number];

/** File name endings of each row format (lower-case). */
export const rowFileExtensions = {
  json: [".json"],
  jsonl: [".jsonl", ".ndjson"],
  parquet: [".parquet"],
} as const satisfies Record<RowFileFormat, readonly string[]>;

/** The row format a file name says, or undefined when its ending is none of {@link rowFileExtensions}. */
export function rowFileFormatOf(path: string): RowFileFormat | undefined {
  const extension = extname(path).toLowerCase();
  return rowFileFormats.find((format) => (rowFileExtensions[format] as readonly string[]).includes(extension));
}

export interface DataRows {
  path: string;
  format: RowFileFormat;
  /** The rows in file order, as parsed (objects are not checked here). */
  values: unknown[];
  /**
   * Where a field of row `index` is written: the line (JSON and JSON Lines; Parquet has none) and the field as a
   * reader finds it: `instances[0].input` on a JSON Lines line, `[3].instances[0].input` in a JSON array or Parquet.
   */
  locate(index: number, field?: readonly PropertyKey[]): { line?: number; field?: string };
}

export interface ReadDataRowsOptions {
  /** Default: from the file name (see {@link rowFileExtensions}). */
  format?: RowFileFormat;
  /** What the file should hold, for error messages ("Alpaca JSON: a list of {instruction, input, output}"). */
  expected: string;
}

/** Read the rows of a JSON array, JSON Lines or Parquet file; a missing, unreadable or malformed file is a ConfigError. */
export async function readDataRows(path: string, options: ReadDataRowsOptions): Promise<DataRows> {
  const { expected } = options;
  const format = options.format ?? rowFileFormatOf(path);
  if (format === undefined) {
    const endings = rowFileFormats.flatMap((name) => rowFileExtensions[name]).join(", ");
    throw new ConfigError(`cannot tell the file's format from its name; use one of ${endings} (${expected})`, { path });
  }
  if (format === "parquet") {
    const values = await readParquetRows(path, expected);
    return { path, format, values, locate: (index, field = []) => ({ field: formatField([index, ...field]) }) };
  }
  const text = await readDataFile(path, expected);
  if (format === "jsonl") {
    const parsed = parseJsonLines(text, path, expected);
    return {
      path,
      format,
      values: parsed.map((entry) => entry.value),
      locate: (index, field = []) => ({ line: parsed[index]?.line, field: formatField(field) || undefined }),
    };
  }
  const value = parseJsonText(text, path, expected);
  if (!Array.isArray(value)) {
    const got = value === null ? "null" : typeof value === "object" ? "an object" : typeof value;
    throw new ConfigError(`expected a JSON array of rows, got ${got}; ${expected}`, { path, line: 1 });
  }
  // The layout is one more pass over the text; only an error needs it.
  let layout: ReturnType<typeof jsonLayout> | undefined;
  return {
    path,
    format,
    values: value,
    locate: (index, field = []) => {
      layout ??= jsonLayout(text);
      return { line: layout.line([index, ...field]), field: formatField([index, ...field]) };
    },
  };
}

/** A ConfigError for a field of row `index`, located by file, line and field. */
export function rowError(rows: DataRows, index: number, field: readonly PropertyKey[], message: string): ConfigError {
  return new ConfigError(message, { path: rows.path, ...rows.locate(index, field) });
}
