/**
 * Records as a Parquet file (hyparquet-writer, pure JavaScript), typed so the Hugging Face hub and pandas/datasets
 * read the columns as what they are: texts, numbers, flags, lists of texts, chat `messages` (a list of
 * {role, content} structs), and anything else as a JSON text column. Read back with hyparquet, every row is the
 * record it was written from (a field a record lacks reads back as null).
 */
import { rename, rm } from "node:fs/promises";
import type { SchemaElement } from "hyparquet";
import { parquetWriteFile } from "hyparquet-writer";
import { ConfigError } from "../errors/index.js";

export const parquetColumnKinds = [
  "string",
  "boolean",
  "int32",
  "double",
  "string-list",
  "struct-list",
  "json",
] as const;
export type ParquetColumnKind = (typeof parquetColumnKinds)[number];

export interface ParquetColumn {
  name: string;
  kind: ParquetColumnKind;
  /** For "struct-list": the text fields of each element, in order (`["role", "content"]` for chat messages). */
  fields?: string[];
}

export interface WriteParquetOptions {
  /** Default: inferred from the rows by {@link inferParquetColumns} (needed when there are no rows). */
  columns?: readonly ParquetColumn[];
  /** Key-value metadata stored in the file footer (e.g. the constitution hash). */
  metadata?: Record<string, string>;
}

export interface WriteParquetResult {
  path: string;
  rows: number;
  columns: ParquetColumn[];
}

const int32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** The narrowest kind that holds every value given (null and undefined fit every kind). */
function kindOf(values: readonly unknown[]): Pick<ParquetColumn, "kind" | "fields"> {
  const present = values.filter((value) => value !== null && value !== undefined);
  if (present.every((value) => typeof value === "string")) return { kind: "string" };
  if (present.every((value) => typeof value === "boolean")) return { kind: "boolean" };
  if (present.every((value) => typeof value === "number" && Number.isFinite(value))) {
    const whole = present.every(
      (value) => Number.isInteger(value) && (value as number) >= int32.min && (value as number) <= int32.max,
    );
    return { kind: whole ? "int32" : "double" };
  }
  if (present.every(Array.isArray)) {
    const elements = (present as unknown[][]).flat();
    if (elements.every((element) => typeof element === "string")) return { kind: "string-list" };
    // A list of structs only when every element has the same text fields, so every row reads back unchanged.
    const first = elements[0];
    if (isRecord(first)) {
      const fields = Object.keys(first);
      const same = elements.every(
        (element) =>
          isRecord(element) &&
          Object.keys(element).length === fields.length &&
          fields.every((field) => typeof element[field] === "string"),
      );
      if (same && fields.length > 0) return { kind: "struct-list", fields };
    }
  }
  return { kind: "json" };
}

/** One column per field name, in the order fields first appear, each of the narrowest kind holding its values. */
export function inferParquetColumns(rows: readonly Record<string, unknown>[]): ParquetColumn[] {
  const names = new Set<string>();
  for (const row of rows) for (const name of Object.keys(row)) names.add(name);
  return [...names].map((name) => ({ name, ...kindOf(rows.map((row) => row[name])) }));
}

/** Whether `value` can be written in a column of `column`'s kind. */
function fits(column: ParquetColumn, value: unknown): boolean {
  if (value === null || value === undefined) return true;
  const inferred = kindOf([value]);
  if (column.kind === "json") return true;
  if (column.kind === "double") return inferred.kind === "int32" || inferred.kind === "double";
  if (column.kind === "string-list" || column.kind === "struct-list") {
    if (!Array.isArray(value)) return false;
    if (value.length === 0) return true;
    if (column.kind === "string-list") return inferred.kind === "string-list";
    return inferred.kind === "struct-list" && inferred.fields?.join("\0") === column.fields?.join("\0");
  }
  return inferred.kind === column.kind;
}

const text = (name: string): SchemaElement => ({
  name,
  type: "BYTE_ARRAY",
  converted_type: "UTF8",
  repetition_type: "OPTIONAL",
});

/** The Parquet schema elements of a column (the standard three-level layout for lists). */
function schemaOf(column: ParquetColumn): SchemaElement[] {
  const { name } = column;
  const list = (children: SchemaElement[]): SchemaElement[] => [
    { name, repetition_type: "OPTIONAL", num_children: 1, converted_type: "LIST" },
    { name: "list", repetition_type: "REPEATED", num_children: 1 },
    ...children,
  ];
  switch (column.kind) {
    case "string":
      return [text(name)];
    case "boolean":
      return [{ name, type: "BOOLEAN", repetition_type: "OPTIONAL" }];
    case "int32":
      return [{ name, type: "INT32", repetition_type: "OPTIONAL" }];
    case "double":
      return [{ name, type: "DOUBLE", repetition_type: "OPTIONAL" }];
    case "json":
      return [{ name, type: "BYTE_ARRAY", converted_type: "JSON", repetition_type: "OPTIONAL" }];
    case "string-list":
      return list([text("element")]);
    case "struct-list": {
      const fields = column.fields ?? [];
      return list([
        { name: "element", repetition_type: "OPTIONAL", num_children: fields.length },
        ...fields.map((field) => text(field)),
      ]);
    }
  }
}

/** How a column's type reads in a dataset card: `string`, `list<struct<role: string, content: string>>`, ... */
export function describeParquetColumn(column: ParquetColumn): string {
  switch (column.kind) {
    case "boolean":
      return "bool";
    case "double":
      return "float64";
    case "json":
      return "string (JSON)";
    case "string-list":
      return "list<string>";
    case "struct-list":
      return `list<struct<${(column.fields ?? []).map((field) => `${field}: string`).join(", ")}>>`;
    default:
      return column.kind;
  }
}

/**
 * Write rows as one Parquet file at `path` (written beside it, then renamed into place, so a killed write never
 * leaves a broken file where a good one was). A value that does not fit its column is a ConfigError naming the row
 * and the column.
 */
export async function writeParquetRows(
  path: string,
  rows: readonly Record<string, unknown>[],
  options: WriteParquetOptions = {},
): Promise<WriteParquetResult> {
  const columns = [...(options.columns ?? inferParquetColumns(rows))];
  if (columns.length === 0)
    throw new ConfigError("cannot write a Parquet file without columns; give `columns` when there are no rows", {
      path,
    });
  rows.forEach((row, index) => {
    for (const column of columns) {
      if (!fits(column, row[column.name]))
        throw new ConfigError(
          `row ${index}: ${JSON.stringify(row[column.name])?.slice(0, 80)} does not fit the ${describeParquetColumn(column)} column`,
          { path, field: column.name },
        );
    }
  });
  const partial = `${path}.partial`;
  try {
    parquetWriteFile({
      filename: partial,
      columnData: columns.map((column) => ({ name: column.name, data: rows.map((row) => row[column.name] ?? null) })),
      schema: [{ name: "root", num_children: columns.length }, ...columns.flatMap(schemaOf)],
      kvMetadata: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      createdBy: "selfalign",
    });
    await rename(partial, path);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  return { path, rows: rows.length, columns };
}
