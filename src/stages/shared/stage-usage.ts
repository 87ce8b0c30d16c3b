/**
 * The token usage a stage call reports in its result: what this call added to its stores' manifests. A manifest
 * also holds the usage of earlier calls (a resumed run), which `selfalign status` shows; the result must not count it
 * again, since callers (the pipeline) sum results per invocation.
 */
import type { StageStore } from "../../run-store/stage-store.js";

export interface StageUsage {
  promptTokens: number;
  completionTokens: number;
}

/** Remember the stores' usage now; the returned function gives what they gained since, summed over the stores. */
export function usageSince(...stores: StageStore[]): () => StageUsage {
  const before = stores.map((store) => ({ ...store.manifest.usage }));
  return () => {
    const usage: StageUsage = { promptTokens: 0, completionTokens: 0 };
    stores.forEach((store, i) => {
      usage.promptTokens += store.manifest.usage.promptTokens - before[i]!.promptTokens;
      usage.completionTokens += store.manifest.usage.completionTokens - before[i]!.completionTokens;
    });
    return usage;
  };
}
