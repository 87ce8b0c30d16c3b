import { readFile, writeFile } from "node:fs/promises";
import { ConfigError } from "../errors/index.js";

/** Read a text file; undefined when it does not exist. */
export async function readTextFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Read a JSON file (run.json, manifest.json); undefined when missing; a ConfigError naming the file when broken. */
export async function readJsonFile(path: string): Promise<unknown> {
  const text = await readTextFile(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`is not valid JSON (${(error as Error).message}); restore or delete it`, { path });
  }
}

/**
 * Write rows as JSON Lines (one JSON value and "\n" each). For files in other tools' formats that carry no record id
 * (Alpaca / chat exports, FastChat files, training logs); stage records go through the stage store instead.
 */
export async function writeJsonLines(path: string, rows: readonly unknown[]): Promise<void> {
  await writeFile(path, rows.map((row) => `${JSON.stringify(row)}\n`).join(""));
}
