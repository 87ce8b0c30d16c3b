import { readFile } from "node:fs/promises";
import { ConfigError } from "../errors/index.js";

/** Read a JSON file (run.json, manifest.json); undefined when missing; a ConfigError naming the file when broken. */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`is not valid JSON (${(error as Error).message}); restore or delete it`, { path });
  }
}
