/**
 * Prompts from files in the field's formats, as one normalised record, for every stage that answers prompts:
 * - Alpaca rows `{instruction, input?, ...}` as a JSON array, JSON Lines or Parquet;
 * - chat rows `{messages: [{role, content}, ...]}` (JSON Lines, JSON or Parquet): the first user turn is the prompt;
 * - a plain text file: one prompt per non-blank line.
 * Each record's id is a hash of its text, so the same prompt has the same id in every file and every run.
 */
import { basename, extname } from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { readDataFile } from "../eval/data/read-data-file.js";
import { recordId } from "../run-store/record-id.js";
import { type DataRows, readDataRows, rowError, rowFileFormatOf } from "./data-rows.js";

/** One prompt, whatever file it came from (Alpaca field names). */
export const promptRecordSchema = z.strictObject({
  /** {@link promptId} of the instruction and input. */
  id: z.string().min(1),
  instruction: z.string().min(1),
  /** Context or data that follows the instruction (Alpaca `input`); absent when empty. */
  input: z.string().min(1).optional(),
  /** Where it came from: the file's name unless the reader was told otherwise. */
  source: z.string().min(1),
});
export type PromptRecord = z.infer<typeof promptRecordSchema>;

export const promptFileFormats = ["json", "jsonl", "parquet", "text"] as const;
export type PromptFileFormat = (typeof promptFileFormats)[number];

export interface ReadPromptsOptions {
  /** Default: from the file name: .json, .jsonl / .ndjson, .parquet, .txt. */
  format?: PromptFileFormat;
  /** `source` of every record. Default: the file's name without its folder (`alpaca_data.json`). */
  source?: string;
  /**
   * Columns to read where a dataset names them otherwise. Defaults: `instruction`, `input`, `messages`. E.g. Dolly:
   * `{ input: "context" }`; a prompt/completion file: `{ instruction: "prompt" }`.
   */
  fields?: { instruction?: string; input?: string; messages?: string };
  /** Keep at most this many prompts (after duplicates are dropped). Default: all. */
  limit?: number;
}

export interface ReadPromptsResult {
  /** In file order; a prompt repeated in the file is kept once, at its first place. */
  prompts: PromptRecord[];
  format: PromptFileFormat;
  /** Rows (or non-blank lines) read. */
  rows: number;
  /** Rows dropped because an earlier row has the same instruction and input. */
  duplicates: number;
}

/** The id of a prompt: the same instruction and input always give the same id (whitespace at the ends ignored). */
export function promptId(instruction: string, input?: string): string {
  return recordId("prompt", { instruction: instruction.trim(), input: input?.trim() || undefined });
}

const formatExpected = {
  json: "a JSON array of Alpaca rows {instruction, input} or chat rows {messages: [{role, content}]}",
  jsonl: "JSON Lines of Alpaca rows {instruction, input} or chat rows {messages: [{role, content}]}",
  parquet: "a Parquet file with an instruction column (and optionally input) or a messages column",
  text: "a text file with one prompt per line",
} as const satisfies Record<PromptFileFormat, string>;

/**
 * Read the prompts of a file. A row without a usable prompt is a ConfigError naming the file, the line (or the row of
 * a Parquet file) and the field, and saying what a row should hold.
 *
 * @example
 * const { prompts } = await readPrompts("data/alpaca_data.json");
 * const { prompts: chats } = await readPrompts("train-00000-of-00001.parquet", { limit: 1000 });
 */
export async function readPrompts(path: string, options: ReadPromptsOptions = {}): Promise<ReadPromptsResult> {
  const format = options.format ?? promptFileFormatOf(path);
  const source = options.source ?? basename(path);
  const candidates = format === "text" ? await textPrompts(path) : rowPrompts(await readRows(path, format), options);
  if (candidates.length === 0) throw new ConfigError(`holds no prompts; expected ${formatExpected[format]}`, { path });
  const seen = new Set<string>();
  const prompts: PromptRecord[] = [];
  let duplicates = 0;
  for (const { instruction, input } of candidates) {
    const id = promptId(instruction, input);
    if (seen.has(id)) {
      duplicates++;
      continue;
    }
    seen.add(id);
    if (options.limit !== undefined && prompts.length >= options.limit) continue;
    prompts.push({ id, instruction, ...(input === undefined ? {} : { input }), source });
  }
  return { prompts, format, rows: candidates.length, duplicates };
}

function promptFileFormatOf(path: string): PromptFileFormat {
  if (extname(path).toLowerCase() === ".txt") return "text";
  const format = rowFileFormatOf(path);
  if (format) return format;
  throw new ConfigError(
    "cannot tell the prompt file's format from its name; name it .json, .jsonl, .parquet or .txt, or pass `format`",
    { path },
  );
}

function readRows(path: string, format: Exclude<PromptFileFormat, "text">): Promise<DataRows> {
  return readDataRows(path, { format, expected: `expected ${formatExpected[format]}` });
}

interface Candidate {
  instruction: string;
  input?: string;
}

async function textPrompts(path: string): Promise<Candidate[]> {
  const text = await readDataFile(path, formatExpected.text);
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((instruction) => ({ instruction }));
}

function rowPrompts(rows: DataRows, options: ReadPromptsOptions): Candidate[] {
  const fields = { instruction: "instruction", input: "input", messages: "messages", ...options.fields };
  const expected = `expected ${formatExpected[rows.format]}`;
  // Told which column holds the instruction, a row is read as Alpaca even when it also has messages.
  const explicitInstruction = options.fields?.instruction !== undefined;
  return rows.values.map((value, index) => {
    if (value === null || typeof value !== "object" || Array.isArray(value))
      throw rowError(rows, index, [], `expected an object per row, got ${describe(value)}; ${expected}`);
    const row = value as Record<string, unknown>;
    if (!explicitInstruction && fields.messages in row && !(fields.instruction in row))
      return { instruction: firstUserTurn(rows, index, row[fields.messages], fields.messages, expected) };
    const instruction = row[fields.instruction];
    if (instruction === undefined)
      throw rowError(rows, index, [fields.instruction], `missing field "${fields.instruction}"; ${expected}`);
    const text = (field: string, got: unknown) => {
      if (typeof got !== "string")
        throw rowError(rows, index, [field], `expected a text, got ${describe(got)}; ${expected}`);
      return got.trim();
    };
    const trimmed = text(fields.instruction, instruction);
    if (trimmed === "") throw rowError(rows, index, [fields.instruction], "is empty; every row needs a prompt");
    const input =
      row[fields.input] === undefined || row[fields.input] === null ? "" : text(fields.input, row[fields.input]);
    return { instruction: trimmed, ...(input === "" ? {} : { input }) };
  });
}

function firstUserTurn(rows: DataRows, index: number, messages: unknown, field: string, expected: string): string {
  if (!Array.isArray(messages))
    throw rowError(rows, index, [field], `expected a list of {role, content}, got ${describe(messages)}; ${expected}`);
  const at = messages.findIndex(
    (message) => message !== null && typeof message === "object" && (message as { role?: unknown }).role === "user",
  );
  if (at === -1)
    throw rowError(rows, index, [field], 'has no message with role "user"; the first user turn is the prompt');
  const content = (messages[at] as { content?: unknown }).content;
  if (typeof content !== "string" || content.trim() === "")
    throw rowError(rows, index, [field, at, "content"], `expected the user's text, got ${describe(content)}`);
  return content.trim();
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return value.trim() === "" ? "an empty text" : "a text";
  return `${typeof value} ${String(value)}`;
}
