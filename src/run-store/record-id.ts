import { createHash } from "node:crypto";

/** JSON with object keys sorted at every depth, so equal values always give the same text (and the same id). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)) ?? "null";
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => (item === undefined ? null : sortKeys(item)));
  if (value !== null && typeof value === "object") {
    const source = value as Record<string, unknown> & { toJSON?: () => unknown };
    if (typeof source.toJSON === "function") return sortKeys(source.toJSON());
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(source).sort()) {
      if (source[key] !== undefined) sorted[key] = sortKeys(source[key]);
    }
    return sorted;
  }
  return value;
}

/**
 * A record's deterministic id: the first 20 hex characters of the sha256 of the canonical JSON of `parts`
 * (typically stage name, parent id, sample index and the config that shapes the output). Equal parts => equal id,
 * which is what lets a resumed run skip exactly the finished work.
 */
export function recordId(...parts: unknown[]): string {
  return createHash("sha256").update(canonicalJson(parts)).digest("hex").slice(0, 20);
}
