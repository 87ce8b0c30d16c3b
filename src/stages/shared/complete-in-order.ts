/**
 * Send a batch of requests at once and hand the results over in request order, as soon as each prefix of the
 * batch is complete. Stages whose decisions depend on order (dedup against everything accepted so far) commit
 * through this, so a run that is stopped and resumed makes exactly the decisions of an uninterrupted one.
 */
import {
  type Completion,
  type CompletionRequest,
  type CompletionResult,
  completeAll,
  type LanguageModel,
  type TokenUsage,
} from "../../backends/language-model.js";
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

/**
 * The one completion of one request, for stages whose items are independent (run through `processItems`). Throws
 * AbortedError when the request was stopped, so a cut-off answer is never recorded as finished, and BackendError
 * (naming `recordId`) when no completion came back.
 */
export async function completeOne(
  backend: LanguageModel,
  request: CompletionRequest,
  options: { signal?: AbortSignal; recordId: string },
): Promise<{ completion: Completion; usage: TokenUsage }> {
  const { signal, recordId } = options;
  const [result] = await completeAll(backend, [request], signal ? { signal } : {});
  const completion = result?.completions[0];
  if (result === undefined || completion === undefined) {
    throw new BackendError(`${backend.id} returned no completion for ${recordId}`, { recordId });
  }
  if (completion.finishReason === "abort" || signal?.aborted) throw new AbortedError();
  return { completion, usage: result.usage };
}
