/**
 * Stage 2, Principle-Driven Self-Alignment (method-spec A.4): answer every stage-1 prompt after the meta-prompt of
 * principles and worked examples, with internal thoughts first; keep answers that pass the named filters, with
 * their thoughts and cited principles, and count principle usage into the manifest.
 */
import { type LanguageModel, type SamplingOptions, requestConcurrency } from "../../backends/language-model.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { recordId } from "../../run-store/record-id.js";
import type { StageStore } from "../../run-store/stage-store.js";
import { completeOne } from "../shared/complete-in-order.js";
import { checkContext, overflowRejection } from "../shared/context-check.js";
import { deriveSeed } from "../shared/random.js";
import { type StageUsage, usageSince } from "../shared/stage-usage.js";
import { buildLeakageBlacklist, filterSelfAlignCompletion, type SelfAlignFilterOptions } from "./filters.js";
import { citedPrinciples } from "./parse.js";
import { countPrincipleUsage } from "./principle-usage.js";
import { buildSelfAlignMetaPrompt, buildSelfAlignPrompt, type SelfAlignConstitution, turnMarkers } from "./prompt.js";
import { constitutionTextValues, renderConstitutionText } from "../../constitution/render-constitution-text.js";

export const selfAlignStage = "self-align";

/** Stage 2 sampling (paper): T 0.5, top-p 0.9, 256 new tokens; the next user turn ends the answer. */
export const selfAlignSamplingDefaults = { temperature: 0.5, topP: 0.9, maxTokens: 256 } as const;

/** A prompt from stage 1 (self-instruct or red-team record). */
export interface SelfAlignInput {
  id: string;
  instruction: string;
  input?: string;
  questionType?: string;
  source?: string;
}

export interface SelfAlignRecord {
  [field: string]: unknown;
  id: string;
  parentId: string;
  instruction: string;
  input: string;
  thoughts: string;
  citedPrinciples: string[];
  output: string;
  finishReason: "stop" | "length" | "abort";
  endedTurn: boolean;
  truncated: boolean;
  questionType?: string;
  source?: string;
  backend: string;
}

export interface RunSelfAlignOptions {
  backend: LanguageModel;
  /** The `self-align` stage store. */
  store: StageStore;
  constitution: SelfAlignConstitution & { hash?: string };
  /** Stage-1 prompts to answer. */
  inputs: readonly SelfAlignInput[];
  /** Merged over {@link selfAlignSamplingDefaults}; `stop` defaults to ["\n\nUser:"]. */
  sampling?: SamplingOptions;
  /**
   * Logit bias. Default: -100 on the first token of "Sorry" (the reference's anti-apology bias). `{}` for none.
   */
  logitBias?: Record<number, number>;
  /** Requests in flight. Default the backend's `parallel` capability. */
  concurrency?: number;
  filters?: SelfAlignFilterOptions;
  seed?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunSelfAlignResult {
  counts: { kept: number; rejected: number; byFilter: Record<string, number> };
  /** Tokens this call used (the manifest also counts earlier calls of a resumed run). */
  usage: StageUsage;
  warnings: string[];
}

export async function runSelfAlign(options: RunSelfAlignOptions): Promise<RunSelfAlignResult> {
  const { backend, store, constitution, onProgress, signal } = options;
  const stage = store.stage;
  const { assistant } = constitution;
  const metaPrompt = buildSelfAlignMetaPrompt(constitution);
  const markers = turnMarkers(assistant.generationName);
  const blacklist = buildLeakageBlacklist(constitution);
  const opening = renderConstitutionText(assistant.thoughtOpening, constitutionTextValues(assistant, "generation"));
  const logitBias = options.logitBias ?? (await sorryBias(backend));
  const sampling: SamplingOptions = {
    ...selfAlignSamplingDefaults,
    stop: [`\n\n${markers.user}`],
    ...options.sampling,
    ...(Object.keys(logitBias).length > 0 ? { logitBias: { ...options.sampling?.logitBias, ...logitBias } } : {}),
  };
  const maxTokens = sampling.maxTokens ?? 256;
  const seed = options.seed ?? 42;
  const concurrency = requestConcurrency(backend, options.concurrency);
  const callUsage = usageSince(store);
  const items = options.inputs.map((input) => ({ ...input, id: recordId(stage, input.id), inputId: input.id }));

  try {
    await store.processItems({
      items,
      concurrency,
      ...(signal ? { signal } : {}),
      ...(onProgress ? { onProgress } : {}),
      process: async (item, itemSignal) => {
        const input = item.input ?? "";
        const base = {
          id: item.id,
          parentId: item.inputId,
          instruction: item.instruction,
          input,
          ...(item.questionType === undefined ? {} : { questionType: item.questionType }),
          ...(item.source === undefined ? {} : { source: item.source }),
        };
        const prompt = buildSelfAlignPrompt(metaPrompt, assistant.generationName, item.instruction, input);
        const overflow = await checkContext(backend, prompt, maxTokens);
        if (overflow) return { rejected: { ...base, ...overflowRejection(item.id, overflow) } };
        const { completion, usage } = await completeOne(
          backend,
          { ...sampling, prompt, seed: deriveSeed(seed, item.id) },
          { signal: itemSignal, recordId: item.id },
        );
        store.addUsage(usage);
        const filtered = filterSelfAlignCompletion(completion.text, completion.finishReason, {
          constitution,
          instruction: item.instruction,
          input,
          blacklist,
          ...(options.filters ? { options: options.filters } : {}),
        });
        if (!filtered.ok) {
          return {
            rejected: {
              ...base,
              thoughts: filtered.thoughts,
              ...(filtered.answer === undefined ? {} : { answer: filtered.answer }),
              completion: completion.text,
              finishReason: completion.finishReason,
              filter: filtered.filter,
              reason: filtered.reason,
            },
          };
        }
        const record: SelfAlignRecord = {
          ...base,
          thoughts: filtered.value.thoughts,
          citedPrinciples: citedPrinciples(filtered.value.thoughts, constitution.principles, opening),
          output: filtered.value.output,
          finishReason: completion.finishReason,
          endedTurn: filtered.value.endedTurn,
          truncated: filtered.value.truncated,
          backend: backend.id,
        };
        return { kept: record };
      },
    });
  } finally {
    await saveUsage(store, constitution);
  }
  const counts = store.manifest.counts;
  return {
    counts: { kept: counts.kept, rejected: counts.rejected, byFilter: { ...counts.byFilter } },
    usage: callUsage(),
    warnings: [...store.warnings],
  };
}

/** Recount principle usage from every kept record (so resumed runs count each record once) and save. */
async function saveUsage(store: StageStore, constitution: SelfAlignConstitution): Promise<void> {
  const records = await store.readRecords<SelfAlignRecord>();
  store.manifest.extra.principleUsage = countPrincipleUsage(
    records,
    constitution.principles.map((principle) => principle.id),
  );
  await store.saveManifest();
}

/** -100 on the first token of "Sorry", as the reference biased its stage-2 sampling. */
async function sorryBias(backend: LanguageModel): Promise<Record<number, number>> {
  const tokens = await backend.tokenize("Sorry");
  return tokens.length > 0 ? { [tokens[0]!]: -100 } : {};
}
