/** Where the default constitution lives: `src/constitution/default` in the package (shipped by package.json "files"). */
import { join } from "node:path";
import { packageRoot } from "../package-root.js";

/** The folder of the default constitution, whether selfalign runs from src (vitest, tsx) or from dist. */
export function defaultConstitutionDir(): string {
  return join(packageRoot(), "src", "constitution", "default");
}
