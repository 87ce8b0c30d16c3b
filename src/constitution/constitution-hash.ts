/** Content hash of a constitution: sha256 of a canonical JSON (sorted keys), so YAML formatting and comments don't count. */
import { createHash } from "node:crypto";
import { canonicalJson } from "../run-store/record-id.js";
import type { ConstitutionContent } from "./constitution-schema.js";

/** sha256 (hex) of the canonical JSON of the constitution's content. */
export function hashConstitution(content: ConstitutionContent): string {
  const { principles, exemplars, redTeamTypes, seedTasks, assistant, salmon } = content;
  // A folder without salmon.yaml hashes as it did before SALMON's principles existed.
  return createHash("sha256")
    .update(canonicalJson({ principles, exemplars, redTeamTypes, seedTasks, assistant, ...(salmon ? { salmon } : {}) }))
    .digest("hex");
}
