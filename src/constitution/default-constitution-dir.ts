/** Where the default constitution lives, from src (vitest, tsx) or from dist (the published package). */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The folder of the default constitution: `src/constitution/default`. Running from `dist/constitution/`,
 * it is found at `../../src/constitution/default` (package.json "files" ships that folder).
 */
export function defaultConstitutionDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "default"), join(here, "..", "..", "src", "constitution", "default")];
  return candidates.find((dir) => existsSync(join(dir, "principles.yaml"))) ?? (candidates[0] as string);
}
