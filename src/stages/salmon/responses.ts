/**
 * SALMON step 1, response sampling (method-spec B.1): the SFT policy answers every prompt twice, in the engraved
 * chat format, with two seeds; each answer is cut at the first "###" (the next turn marker) and stripped, and one
 * shorter than 16 characters is rejected, so only prompts with two usable answers become pairs.
 */
import { completeAll, type LanguageModel, type SamplingOptions } from "../../backends/language-model.js";
import type { Constitution } from "../../constitution/index.js";
import { AbortedError, BackendError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { type ItemResult, recordId, type StageStore, type StoreRecord } from "../../run-store/index.js";
import { chatPrompt, USER_TURN_MARKER } from "../engrave/prompt.js";
import { checkContext, overflowRejection } from "../shared/context-check.js";
import { deriveSeed } from "../shared/random.js";
import type { StagePrompt } from "../shared/stage-prompts.js";

export const salmonResponsesStage = "salmon-responses";

/** Two samples per prompt (B.1 ran the policy twice, with seeds 42 and 43). */
export const samplesPerPrompt = 2;

/** B.1: T 0.7, top-p 1.0, at most 768 new tokens; generation stops at the next user turn. */
export const salmonSamplingDefaults = {
  temperature: 0.7,
  topP: 1,
  maxTokens: 768,
  stop: [USER_TURN_MARKER],
} as const satisfies SamplingOptions;

/** Answers shorter than this (after cutting) are rejected (B.1's floor of 16 characters). */
export const minResponseLength = 16;

/**
 * A sampled answer as SALMON pairs it: the text before the first "###", stripped (B.1). The floor is applied to this
 * cut text; the reference measured the raw generation, so an answer that was only a turn marker passed as "".
 */
export function cutResponse(text: string): string {
  const at = text.indexOf("###");
  return (at >= 0 ? text.slice(0, at) : text).trim();
}

export interface SalmonResponseRecord {
  [field: string]: unknown;
  id: string;
  /** The prompt answered. */
  parentId: string;
  /** 0 or 1: which of the two samples. */
  sample: number;
  instruction: string;
  input: string;
  output: string;
  finishReason: string;
  /** Whether the answer ended by itself (not cut by the token limit). */
  ended: boolean;
  seed: number;
  questionType?: string;
  source?: string;
  backend: string;
}

export interface RunSalmonResponsesOptions {
  policy: LanguageModel;
  store: StageStore;
  prompts: readonly StagePrompt[];
  constitution: Constitution;
  sampling?: SamplingOptions;
  /** Base seed; each sample's seed derives from it, the prompt and the sample index. Default 42. */
  seed?: number;
  /** Prompts in flight. Default: the backend's parallelism. */
  concurrency?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunSalmonResponsesResult {
  counts: { kept: number; rejected: number; prompts: number };
  usage: { promptTokens: number; completionTokens: number };
  warnings: string[];
}

export const responseId = (promptId: string, sample: number) => recordId(salmonResponsesStage, promptId, sample);

export async function runSalmonResponses(options: RunSalmonResponsesOptions): Promise<RunSalmonResponsesResult> {
  const { policy, store, constitution, signal } = options;
  const sampling = { ...salmonSamplingDefaults, ...options.sampling };
  const seed = options.seed ?? 42;
  const usage = { promptTokens: 0, completionTokens: 0 };
  const warnings = new Set<string>();
  const result = await store.processItems<StagePrompt, StoreRecord>({
    items: options.prompts,
    concurrency: options.concurrency ?? Math.max(1, policy.capabilities().parallel),
    ...(signal ? { signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    process: async (prompt, itemSignal) => {
      const text = chatPrompt(constitution.assistant, "concise", prompt.instruction, prompt.input ?? "");
      const overflow = await checkContext(policy, text, sampling.maxTokens);
      if (overflow) {
        return Array.from({ length: samplesPerPrompt }, (_, sample) => ({
          rejected: {
            ...overflowRejection(prompt.id, overflow, responseId(prompt.id, sample)),
            parentId: prompt.id,
            sample,
            instruction: prompt.instruction,
          },
        }));
      }
      const seeds = Array.from({ length: samplesPerPrompt }, (_, sample) =>
        deriveSeed(salmonResponsesStage, seed, prompt.id, sample),
      );
      const results = await completeAll(
        policy,
        seeds.map((sampleSeed) => ({ ...sampling, prompt: text, seed: sampleSeed })),
        { signal: itemSignal },
      );
      const outputs: ItemResult[] = [];
      for (const [sample, sampled] of results.entries()) {
        const completion = sampled?.completions[0];
        if (!sampled || !completion)
          throw new BackendError(`${policy.id} returned no completion for prompt ${prompt.id}`, {
            recordId: prompt.id,
          });
        if (completion.finishReason === "abort" || itemSignal.aborted) throw new AbortedError();
        store.addUsage(sampled.usage, `${responseId(prompt.id, sample)}@${seeds[sample]}`);
        usage.promptTokens += sampled.usage.promptTokens;
        usage.completionTokens += sampled.usage.completionTokens;
        for (const warning of sampled.warnings ?? []) warnings.add(warning);
        const output = cutResponse(completion.text);
        const record: SalmonResponseRecord = {
          id: responseId(prompt.id, sample),
          parentId: prompt.id,
          sample,
          instruction: prompt.instruction,
          input: prompt.input ?? "",
          output,
          finishReason: completion.finishReason,
          ended: completion.finishReason === "stop",
          seed: seeds[sample]!,
          ...(prompt.questionType ? { questionType: prompt.questionType } : {}),
          ...(prompt.source ? { source: prompt.source } : {}),
          backend: policy.id,
        };
        if (output.length < minResponseLength) {
          outputs.push({
            rejected: {
              ...record,
              filter: "length-floor",
              reason: `the answer has ${output.length} characters after cutting at "###"; a pair needs two of at least ${minResponseLength}`,
            },
          });
        } else outputs.push({ kept: record });
      }
      return outputs;
    },
  });
  await store.saveManifest();
  return {
    counts: { kept: store.manifest.counts.kept, rejected: store.manifest.counts.rejected, prompts: result.total },
    usage,
    warnings: [...warnings],
  };
}
