/**
 * Self-assessment (method-spec C.4) as the rate stage and the eval use it: one rating request per (pair, aspect),
 * so a resumed run repeats no finished rating; a rating the parser cannot read is kept as a `rating-parse` rejection
 * with the text, and counted.
 */
import { type LanguageModel, type SamplingOptions, requestConcurrency } from "../../backends/language-model.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type { StageStore } from "../../run-store/index.js";
import { completeOne } from "../shared/complete-in-order.js";
import { checkContext, overflowRejection } from "../shared/context-check.js";
import { deriveSeed } from "../shared/random.js";
import { parseSelfRating } from "./parse-rating.js";
import { type RatingAspect, ratingPrompt } from "./prompt.js";
import type { RatingRecord } from "./records.js";

export interface RateItem {
  /** The id of the rating record. */
  id: string;
  /** The pair it rates. */
  parentId: string;
  aspect: RatingAspect;
  instruction: string;
  input: string;
  output: string;
  fields?: Record<string, unknown>;
}

export interface RateItemsOptions {
  /** The rater. */
  backend: LanguageModel;
  store: StageStore;
  items: readonly RateItem[];
  /** `maxTokens` defaults to 128 when unset. */
  sampling: SamplingOptions;
  seed: number;
  concurrency?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export async function rateItems(options: RateItemsOptions): Promise<void> {
  const { backend, store, sampling, seed } = options;
  const maxTokens = sampling.maxTokens ?? 128;
  await store.processItems({
    items: options.items,
    concurrency: requestConcurrency(backend, options.concurrency),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    process: async (item, signal) => {
      const base = {
        id: item.id,
        parentId: item.parentId,
        aspect: item.aspect,
        instruction: item.instruction,
        input: item.input,
        output: item.output,
        ...item.fields,
      };
      const prompt = ratingPrompt(item.aspect, item.instruction, item.input, item.output);
      const overflow = await checkContext(backend, prompt, maxTokens);
      if (overflow) return { rejected: { ...base, ...overflowRejection(item.id, overflow) } };
      const { completion, usage } = await completeOne(
        backend,
        { ...sampling, maxTokens, prompt, seed: deriveSeed(seed, item.id) },
        { signal, recordId: item.id },
      );
      store.addUsage(usage, item.id);
      const parsed = parseSelfRating(completion.text);
      if (!parsed.ok) {
        return {
          rejected: {
            ...base,
            text: completion.text,
            backend: backend.id,
            filter: "rating-parse",
            reason: parsed.reason,
          },
        };
      }
      const record: RatingRecord = {
        ...base,
        score: parsed.score,
        rawScore: parsed.raw,
        explanation: parsed.explanation,
        text: completion.text,
        backend: backend.id,
      };
      return { kept: record };
    },
  });
}
