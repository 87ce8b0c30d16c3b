/** Content hash of a constitution: sha256 of a canonical JSON (sorted keys), so YAML formatting and comments don't count. */
import { createHash } from "node:crypto";
import type { ConstitutionContent } from "./constitution-schema.js";

/** JSON with object keys sorted at every level and `undefined` fields left out. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
}

/** sha256 (hex) of the canonical JSON of the constitution's content. */
export function hashConstitution(content: ConstitutionContent): string {
  const { principles, exemplars, redTeamTypes, seedTasks, assistant } = content;
  return createHash("sha256")
    .update(canonicalJson({ principles, exemplars, redTeamTypes, seedTasks, assistant }))
    .digest("hex");
}
