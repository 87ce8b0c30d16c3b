/** Deterministic randomness for stages: every draw is derived from named parts, so a resumed run draws the same. */
import { createHash } from "node:crypto";
import { canonicalJson } from "../../run-store/record-id.js";

/** A 31-bit seed derived from `parts` (for the backend's sampling seed). */
export function deriveSeed(...parts: unknown[]): number {
  return createHash("sha256").update(canonicalJson(parts)).digest().readUInt32BE(0) >>> 1;
}

/** A uniform [0, 1) generator (mulberry32) seeded from `parts`. */
export function seededRandom(...parts: unknown[]): () => number {
  let state = deriveSeed(...parts);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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
