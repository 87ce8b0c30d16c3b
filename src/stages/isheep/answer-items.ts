/**
 * Zero-shot answering (method-spec C.2) as the answers stage and the eval use it: each task rendered by
 * `answerPrompt`, one completion, the answer stored with the model's id. A prompt too long for the context is
 * rejected (and retried with a larger one), never truncated.
 */
import { type LanguageModel, type SamplingOptions, requestConcurrency } from "../../backends/language-model.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type { StageStore } from "../../run-store/index.js";
import { completeOne } from "../shared/complete-in-order.js";
import { checkContext, overflowRejection } from "../shared/context-check.js";
import { deriveSeed } from "../shared/random.js";
import { answerPrompt } from "./prompt.js";
import type { PairRecord } from "./records.js";

export interface AnswerItem {
  /** The id of the answer record. */
  id: string;
  /** The task it answers. */
  parentId: string;
  instruction: string;
  input: string;
  /** Further fields stored with the answer (the eval's `model`). */
  fields?: Record<string, unknown>;
}

export interface AnswerItemsOptions {
  backend: LanguageModel;
  store: StageStore;
  items: readonly AnswerItem[];
  /** `maxTokens` defaults to 256 when unset. */
  sampling: SamplingOptions;
  seed: number;
  /** Requests in flight. Default the backend's parallelism. */
  concurrency?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export async function answerItems(options: AnswerItemsOptions): Promise<void> {
  const { backend, store, sampling, seed } = options;
  const maxTokens = sampling.maxTokens ?? 256;
  await store.processItems({
    items: options.items,
    concurrency: requestConcurrency(backend, options.concurrency),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    process: async (item, signal) => {
      const base = { id: item.id, parentId: item.parentId, instruction: item.instruction, input: item.input };
      const prompt = answerPrompt(item.instruction, item.input);
      const overflow = await checkContext(backend, prompt, maxTokens);
      if (overflow) return { rejected: { ...base, ...item.fields, ...overflowRejection(item.id, overflow) } };
      const { completion, usage } = await completeOne(
        backend,
        { ...sampling, maxTokens, prompt, seed: deriveSeed(seed, item.id) },
        { signal, recordId: item.id },
      );
      store.addUsage(usage, item.id);
      const record: PairRecord = {
        ...base,
        ...item.fields,
        output: completion.text.trim(),
        finishReason: completion.finishReason,
        backend: backend.id,
      };
      return { kept: record };
    },
  });
}
