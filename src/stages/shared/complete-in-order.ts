/**
 * Send a batch of requests at once and hand the results over in request order, as soon as each prefix of the
 * batch is complete. Stages whose decisions depend on order (dedup against everything accepted so far) commit
 * through this, so a run that is stopped and resumed makes exactly the decisions of an uninterrupted one.
 */
import type { CompletionRequest, CompletionResult, LanguageModel } from "../../backends/language-model.js";
import { AbortedError, BackendError } from "../../errors/index.js";

/**
 * Calls `commit` for results 0, 1, 2, ... in order. A result that finished with `abort` (or any result after the
 * signal fired) is not committed; the function then throws AbortedError after committing the complete prefix.
 */
export async function completeInOrder(
  backend: LanguageModel,
  requests: CompletionRequest[],
  commit: (index: number, result: CompletionResult) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  if (requests.length === 0) return;
  if (signal?.aborted) throw new AbortedError();
  const pending = new Map<number, CompletionResult>();
  let next = 0;
  let stopped = false;
  try {
    for await (const result of backend.complete(requests, signal ? { signal } : {})) {
      if (stopped) continue;
      if (signal?.aborted || result.completions.some((completion) => completion.finishReason === "abort")) {
        stopped = true;
        continue;
      }
      pending.set(result.index, result);
      while (pending.has(next)) {
        const ready = pending.get(next)!;
        pending.delete(next);
        await commit(next, ready);
        next++;
      }
    }
  } catch (error) {
    if (signal?.aborted) throw new AbortedError();
    throw error;
  }
  if (stopped || signal?.aborted) throw new AbortedError();
  if (next < requests.length) {
    throw new BackendError(`${backend.id} returned ${next} of ${requests.length} completions; the rest never arrived`);
  }
}
