/**
 * Stage 4, verbose cloning (method-spec A.6): the engraved model (base + stage-3 adapter), prompted with the verbose
 * teacher prompt, answers every stage-1 prompt and identity question; the answers are filtered and a fresh adapter is
 * trained on the base model with the concise prompt (context distillation: the final model answers at length without
 * being asked to).
 */
import type { LanguageModel, SamplingOptions } from "../../backends/language-model.js";
import type { Constitution } from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import { recordId, type StageStore } from "../../run-store/index.js";
import type { TrainResult } from "../../training/trainer.js";
import { type AnswerRecord, toSftRecord } from "../engrave/build-sft.js";
import { sftFiles, storeSftRecords, type TrainAdapterOptions, trainAdapter } from "../engrave/run.js";
import { chatPrompt, USER_TURN_MARKER } from "../engrave/prompt.js";
import { completeOne } from "../shared/complete-in-order.js";
import { filterVerboseAnswer, type VerboseFilterOptions } from "./filters.js";

export const verboseCloneStage = "verbose-clone";

/**
 * Teacher sampling (the released script): T 0.3, top-p 0.7, 512 new tokens, tri-gram penalty 1.0 and quad-gram
 * penalty 2.0 (Dromedary's n-gram frequency penalties), stopping at the next user turn.
 */
export const verboseSamplingDefaults = {
  temperature: 0.3,
  topP: 0.7,
  maxTokens: 512,
  stop: [USER_TURN_MARKER],
  ngramPenalties: [
    { n: 3, penalty: 1.0 },
    { n: 4, penalty: 2.0 },
  ],
} as const satisfies SamplingOptions;

export interface VerbosePrompt {
  /** Id of the stage-1 record (or identity question) this answers. */
  id: string;
  instruction: string;
  input?: string;
}

export interface VerboseRecord extends AnswerRecord {
  [field: string]: unknown;
  parentId: string;
  finishReason: string;
  repeatCut: boolean;
  backend: string;
}

/** Training options (`base` is the base model: the final adapter is not continued from stage 3). */
export interface RunVerboseCloneOptions extends TrainAdapterOptions {
  /** The teacher: base model + engraving adapter. */
  teacher: LanguageModel;
  /** The `verbose-clone` stage store. */
  store: StageStore;
  /** A second store for the final SFT set (`verbose-clone-sft`). */
  sftStore: StageStore;
  prompts: readonly VerbosePrompt[];
  constitution: Constitution;
  sampling?: SamplingOptions;
  filters?: VerboseFilterOptions;
  /** Base seed; each prompt's sampling seed derives from it. Default 42. */
  seed?: number;
  /** Called when the answers are done, before training (to free the teacher's memory). */
  beforeTraining?: () => Promise<void>;
  /** The command that made the run, named in the SFT set's dataset card (README.md). Default: "not recorded". */
  command?: string;
}

export interface RunVerboseCloneResult {
  counts: { kept: number; rejected: number; examples: number };
  /** Tokens the teacher read and wrote in this call (earlier, resumed work is in the manifest). */
  usage: { promptTokens: number; completionTokens: number };
  train: TrainResult;
}

/** A stable 31-bit seed per prompt so a resumed run samples exactly what an uninterrupted one would. */
function promptSeed(base: number, id: string): number {
  return (base * 1_000_003 + Number.parseInt(id.slice(0, 7), 16)) % 2_147_483_647;
}

export async function runVerboseClone(options: RunVerboseCloneOptions): Promise<RunVerboseCloneResult> {
  const { teacher, store, constitution, signal } = options;
  const { assistant } = constitution;
  const sampling = { ...verboseSamplingDefaults, ...options.sampling };
  const seed = options.seed ?? 42;
  // A folder holds answers of one setting only (the stage settings guard), so ids need only the prompt.
  const items = options.prompts.map((prompt) => ({
    ...prompt,
    id: recordId(verboseCloneStage, prompt.id),
    parentId: prompt.id,
  }));
  const current = new Set(items.map((item) => item.id));
  const usage = { promptTokens: 0, completionTokens: 0 };
  await store.processItems<(typeof items)[number], VerboseRecord>({
    items,
    concurrency: Math.max(1, teacher.capabilities().parallel),
    ...(signal ? { signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    process: async (item, itemSignal) => {
      const request = {
        ...sampling,
        prompt: chatPrompt(assistant, "verbose", item.instruction, item.input ?? ""),
        seed: promptSeed(seed, item.parentId),
      };
      // completeOne throws AbortedError for a stopped answer, so a cut-off text is never stored as done.
      const { completion, usage: used } = await completeOne(teacher, request, {
        signal: itemSignal,
        recordId: item.id,
      });
      store.addUsage(used);
      usage.promptTokens += used.promptTokens;
      usage.completionTokens += used.completionTokens;
      const filtered = filterVerboseAnswer(completion.text, completion.finishReason, assistant, options.filters);
      const base = {
        id: item.id,
        parentId: item.parentId,
        instruction: item.instruction,
        input: item.input ?? "",
        finishReason: completion.finishReason,
        backend: teacher.id,
      };
      if (!filtered.kept) {
        return {
          rejected: {
            ...base,
            output: filtered.output,
            ended: false,
            repeatCut: false,
            filter: filtered.filter,
            reason: filtered.reason,
          },
        };
      }
      return { kept: { ...base, output: filtered.output, ended: filtered.ended, repeatCut: filtered.repeatCut } };
    },
  });
  await store.saveManifest();
  await options.beforeTraining?.();

  const kept = (await store.readRecords<VerboseRecord>()).filter((record) => current.has(record.id));
  const sft = kept.map((record) => toSftRecord(record, assistant, "concise"));
  if (sft.length === 0) {
    const byFilter = Object.entries(store.manifest.counts.byFilter)
      .map(([filter, n]) => `${filter} ${n}`)
      .join(", ");
    throw new ConfigError(
      `verbose-clone: the filters rejected every teacher answer (${byFilter || "no answers"}), so there is nothing to train the final adapter on. See 'selfalign report' for the answers; raise sampling.maxTokens or answer more prompts`,
      { path: store.dir },
    );
  }
  await storeSftRecords(options.sftStore, sft, constitution, {
    ...(options.command ? { command: options.command } : {}),
  });
  const train = await trainAdapter(store, sft, sftFiles(store.dir).adapterDir, options);
  return {
    counts: { kept: kept.length, rejected: store.manifest.counts.rejected, examples: sft.length },
    usage,
    train,
  };
}
