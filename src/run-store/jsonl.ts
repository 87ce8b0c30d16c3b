/**
 * JSON Lines files of records: the one place where record lines are serialised, parsed and validated.
 * Appends are line-atomic: each record is one `write` of one complete line to a file opened in append mode, so a
 * process killed with `kill -9` leaves at most one torn last line, which `readJsonl` detects (and can cut away).
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { type FileHandle, open, truncate } from "node:fs/promises";
import type { ZodType } from "zod";
import { ConfigError } from "../errors/index.js";

/** Every stored record has a deterministic `id`; `parentId` links it to the record it came from. */
export interface StoreRecord {
  id: string;
  parentId?: string;
  [field: string]: unknown;
}

/**
 * A record that a filter rejected, with the filter's name and a reason a person can read. `retryOf` names the input
 * it rejected when the rejection depends on settings that may change without changing the records (a prompt longer
 * than the context): that input is not finished, so it is tried again the next time the stage runs.
 */
export type RejectedRecord<T extends StoreRecord = StoreRecord> = T & {
  filter: string;
  reason: string;
  retryOf?: string;
};

export interface ReadJsonlOptions<T> {
  /** Cut a torn last line off the file (only the process holding the run lock may). Default false. */
  repair?: boolean;
  /** Validate each record further; errors name the file, line and field. */
  schema?: ZodType<T>;
}

export interface ReadJsonlResult<T> {
  records: T[];
  /** 1 when the last line was torn (no trailing newline, or not valid JSON) and was ignored; else 0. */
  tornLines: number;
  /** Bytes in the file before the torn line (the whole file when nothing is torn). */
  validBytes: number;
}

/** Read a JSONL file of records; a missing file reads as empty. Corruption before the last line is an error. */
export async function readJsonl<T = StoreRecord>(
  path: string,
  options: ReadJsonlOptions<T> = {},
): Promise<ReadJsonlResult<T>> {
  const records: T[] = [];
  const scan = await scanJsonl<T>(path, (record) => records.push(record), options);
  return { records, ...scan };
}

/**
 * Visit each record of a JSONL file in order without holding the whole file in memory (resume reads every stage
 * file on open). Same rules as {@link readJsonl}.
 */
export async function scanJsonl<T = StoreRecord>(
  path: string,
  visit: (record: T, line: number) => void,
  options: ReadJsonlOptions<T> = {},
): Promise<Omit<ReadJsonlResult<T>, "records">> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { tornLines: 0, validBytes: 0 };
    throw error;
  }
  const parser = new JsonlParser<T>(path, visit, options.schema);
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      parser.push(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  const result = parser.end();
  if (options.repair && result.tornLines > 0) await truncate(path, result.validBytes);
  return result;
}

/**
 * Incremental line parser. A line that is not JSON is held back: if another line follows, the file is corrupt
 * (error with path and line); if it was the last line, it is a torn write and is reported as such. A last line
 * without "\n" is torn too.
 */
export class JsonlParser<T> {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes consumed up to the end of the last complete, valid line. */
  private validBytes = 0;
  private line = 0;
  private suspect: { line: number; offset: number; message: string } | undefined;

  constructor(
    private readonly path: string,
    private readonly visit: (record: T, line: number) => void,
    private readonly schema?: ZodType<T>,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf(10, start);
      if (end === -1) break;
      const piece = chunk.subarray(start, end);
      const bytes = this.pendingBytes + piece.length + 1;
      const text =
        this.pending.length > 0 ? Buffer.concat([...this.pending, piece]).toString("utf8") : piece.toString("utf8");
      this.pending = [];
      this.pendingBytes = 0;
      this.handleLine(text, bytes);
      start = end + 1;
    }
    if (start < chunk.length) {
      // Copy: the caller reuses its buffer.
      this.pending.push(Buffer.from(chunk.subarray(start)));
      this.pendingBytes += chunk.length - start;
    }
  }

  private handleLine(text: string, bytes: number): void {
    this.line++;
    if (text.trim() === "") {
      if (!this.suspect) this.validBytes += bytes;
      return;
    }
    if (this.suspect) throw this.corrupt(this.suspect);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      this.suspect = { line: this.line, offset: this.validBytes, message: (error as Error).message };
      return;
    }
    this.visit(validateRecord(value, this.path, this.line, this.schema), this.line);
    this.validBytes += bytes;
  }

  private corrupt(suspect: { line: number; message: string }): ConfigError {
    return new ConfigError(
      `line is not valid JSON (${suspect.message}). The file is corrupted in the middle, which an ` +
        "interrupted append cannot cause; fix or delete that line, then run again.",
      { path: this.path, line: suspect.line },
    );
  }

  end(): { tornLines: number; validBytes: number } {
    if (this.pendingBytes > 0) {
      const text = Buffer.concat(this.pending).toString("utf8");
      if (this.suspect && text.trim() !== "") throw this.corrupt(this.suspect);
      if (text.trim() !== "" || this.suspect)
        return { tornLines: 1, validBytes: this.suspect?.offset ?? this.validBytes };
    }
    if (this.suspect) return { tornLines: 1, validBytes: this.suspect.offset };
    return { tornLines: 0, validBytes: this.validBytes + this.pendingBytes };
  }
}

function validateRecord<T>(value: unknown, path: string, line: number, schema?: ZodType<T>): T {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError(
      `expected a JSON object (a record), got ${Array.isArray(value) ? "an array" : typeof value}`,
      {
        path,
        line,
      },
    );
  }
  const id = (value as { id?: unknown }).id;
  if (typeof id !== "string" || id === "") {
    throw new ConfigError(`expected a record with a non-empty string "id", got ${JSON.stringify(id) ?? "none"}`, {
      path,
      line,
      field: "id",
    });
  }
  if (!schema) return value as T;
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new ConfigError(`record ${id}: ${issue?.message ?? "invalid record"}`, {
    path,
    line,
    field: issue?.path.join("."),
    recordId: id,
  });
}

/** Serialise one record as one line (with its "\n"), checking it is a record. */
function serializeRecord(record: StoreRecord, path: string): Buffer {
  if (record === null || typeof record !== "object" || typeof record.id !== "string" || record.id === "") {
    throw new ConfigError(`cannot write a record without a non-empty string "id" (got ${JSON.stringify(record)})`, {
      path,
      field: "id",
    });
  }
  return Buffer.from(`${JSON.stringify(record)}\n`, "utf8");
}

/** An append-only JSONL file. Writes are synchronous and one line per `write`, so lines never interleave or tear. */
export class JsonlAppender {
  private fd: number | undefined;

  constructor(readonly path: string) {}

  append(record: StoreRecord): void {
    const bytes = serializeRecord(record, this.path);
    this.fd ??= openSync(this.path, "a");
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(this.fd, bytes, offset, bytes.length - offset);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
