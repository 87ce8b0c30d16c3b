import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

/** The directory holding selfalign's package.json, found from this module whether it runs from src/ or dist/. */
export function packageRoot(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "src"))) break;
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "dist"))) break;
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(`cannot find the selfalign package root above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  cached = dir;
  return dir;
}

/** selfalign's version, from its package.json (recorded in run.json and printed by --version). */
export function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string };
  return version;
}
