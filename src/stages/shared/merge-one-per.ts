/** The merge rule "one record per key across shards" (one answer per prompt, one question per type and topic). */
import type { MergeContext, MergeRule } from "../../pipeline/stage-definition.js";
import type { StoreRecord } from "../../run-store/index.js";

export function mergeOnePer(
  keyOf: (record: StoreRecord) => string,
  reason: string,
): (context: MergeContext) => MergeRule {
  return ({ merged }) => {
    const seen = new Set(merged.map(keyOf));
    return {
      check: (record) => (seen.has(keyOf(record)) ? { filter: "merge-duplicate", reason } : undefined),
      add: (record) => seen.add(keyOf(record)),
    };
  };
}
