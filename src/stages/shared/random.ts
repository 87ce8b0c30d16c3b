/** Deterministic randomness for stages: every draw is derived from named parts, so a resumed run draws the same. */
import { createHash } from "node:crypto";
import { mulberry32 } from "../../random/mulberry32.js";
import { canonicalJson } from "../../run-store/record-id.js";

/** A 31-bit seed derived from `parts` (for the backend's sampling seed). */
export function deriveSeed(...parts: unknown[]): number {
  return createHash("sha256").update(canonicalJson(parts)).digest().readUInt32BE(0) >>> 1;
}

/** A uniform [0, 1) generator (mulberry32) seeded from `parts`. */
export function seededRandom(...parts: unknown[]): () => number {
  return mulberry32(deriveSeed(...parts));
}

/** `k` distinct elements drawn without replacement (all of them, shuffled, when k >= length). */
export function sampleWithoutReplacement<T>(random: () => number, items: readonly T[], k: number): T[] {
  const pool = [...items];
  const count = Math.min(k, pool.length);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count);
}

/** A shuffled copy (Fisher-Yates). */
export function shuffled<T>(random: () => number, items: readonly T[]): T[] {
  return sampleWithoutReplacement(random, items, items.length);
}
