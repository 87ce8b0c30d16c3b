import { readFile } from "node:fs/promises";
import type { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { jsonSyntaxErrorLine } from "./json-locate.js";

/** Read a data file as text; a missing file is a ConfigError that says what the file should hold. */
export async function readDataFile(path: string, expected: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ConfigError(`file not found; expected ${expected}`, { path });
    if (code === "EISDIR") throw new ConfigError(`is a folder; expected a file with ${expected}`, { path });
    throw error;
  }
}

/** Parse JSON text, reporting the line of a syntax error. */
export function parseJsonText(text: string, path: string, expected: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const line = jsonSyntaxErrorLine(text);
    throw new ConfigError(`is not valid JSON (${message}); expected ${expected}`, { path, line });
  }
}

/** Validate a value with a zod schema; the error names file, line and the dotted field, and what was expected. */
export function validateData<T>(
  schema: z.ZodType<T>,
  value: unknown,
  where: {
    path: string;
    line?: number;
    fieldPrefix?: readonly PropertyKey[];
    lineOf?: (field: PropertyKey[]) => number | undefined;
  },
  expected: string,
): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const fieldPath = [...(where.fieldPrefix ?? []), ...issue.path];
  const field = formatField(fieldPath);
  const line = where.lineOf?.(fieldPath) ?? where.line;
  throw new ConfigError(`${issue.message}; expected ${expected}`, {
    path: where.path,
    line,
    field: field === "" ? undefined : field,
  });
}

export function formatField(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text === "" ? String(part) : `.${String(part)}`;
  }
  return text;
}

/** Parse JSON Lines: one JSON value per non-blank line, each with its line number. */
export function parseJsonLines(text: string, path: string, expected: string): Array<{ line: number; value: unknown }> {
  const values: Array<{ line: number; value: unknown }> = [];
  text.split("\n").forEach((raw, index) => {
    const lineText = raw.trim();
    if (lineText === "") return;
    try {
      values.push({ line: index + 1, value: JSON.parse(lineText) });
    } catch (error) {
      throw new ConfigError(`line is not valid JSON (${(error as Error).message}); expected ${expected}`, {
        path,
        line: index + 1,
      });
    }
  });
  return values;
}
