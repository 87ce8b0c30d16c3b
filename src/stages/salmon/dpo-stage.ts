/**
 * SALMON's policy step done offline (the embedded alternative to PPO, method-spec B.5): DPO on the
 * aggregated preferences. Every example becomes the policy's pair as the preference export writes it (the engraved
 * chat prompt, "\n" + answer with the end-of-turn marker where the answer ended by itself: the SFT model's own
 * training format), and the trainer's `preference` objective moves the policy away from a frozen reference, logging
 * the chosen-minus-rejected margin and accuracy per step and on a held-out share. The adapter is exported as every
 * training's is (GGUF LoRA + PEFT) and recorded where the pipeline looks for a stage's adapter.
 */
import { join } from "node:path";
import { AbortedError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { recordId, type StageStore } from "../../run-store/index.js";
import type { PreferenceOptions, Trainer, TrainOptions, TrainResult } from "../../training/trainer.js";
import { type AggregatedExample, policyPair } from "./preference-exports.js";

export const salmonDpoStage = "salmon-dpo";

export interface RunSalmonDpoOptions {
  store: StageStore;
  examples: readonly AggregatedExample[];
  trainer: Trainer;
  base: string;
  trainOptions: TrainOptions;
  /** The adapter the policy starts from (the SFT adapter); a fresh LoRA on the base when absent. */
  initAdapter?: string;
  /** beta, loss, label smoothing and the frozen reference. */
  preference: PreferenceOptions;
  /** What the policy started from and what the reference is, in words, kept in the manifest. */
  describe?: { policy: string; reference: string };
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunSalmonDpoResult {
  pairs: number;
  train: TrainResult;
}

/** The training output folder of the stage: adapter.gguf, peft/, checkpoint/, loss.jsonl, eval.jsonl. */
export const dpoAdapterDir = (store: StageStore) => join(store.dir, "adapter");

export async function runSalmonDpo(options: RunSalmonDpoOptions): Promise<RunSalmonDpoResult> {
  const { store } = options;
  if (options.examples.length === 0) {
    throw new ConfigError(
      "salmon-dpo: salmon-aggregate has no examples to train on; run it (and the SALMON stages before it) first",
      { path: store.dir },
    );
  }
  const pairs = options.examples.map((example) => ({
    id: recordId(salmonDpoStage, example.id),
    parentId: example.id,
    instruction: example.instruction,
    input: example.input,
    principles: [...example.principles],
    negated: [...example.negated],
    ...policyPair(example),
  }));
  // The training set is stored as the folder's records (with the run's provenance), as the reward model stores its own.
  for (const pair of pairs) if (!store.isDone(pair.id)) await store.appendRecord(pair);
  await store.saveManifest();
  if (options.signal?.aborted) throw new AbortedError();
  const train = await options.trainer.train({
    kind: "preference",
    base: options.base,
    output: dpoAdapterDir(store),
    examples: pairs.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected })),
    preference: options.preference,
    options: { resume: true, ...options.trainOptions },
    ...(options.initAdapter === undefined ? {} : { initAdapter: options.initAdapter }),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const last = train.evalCurve.at(-1);
  // `adapter`: the pipeline returns it as this stage's adapter (and as the final one when no training follows).
  store.manifest.extra.adapter = train.adapterPath;
  store.manifest.extra.finalLoss = train.finalLoss;
  if (options.describe) {
    store.manifest.extra.policyStart = options.describe.policy;
    store.manifest.extra.reference = options.describe.reference;
  }
  if (last?.accuracy !== undefined) store.manifest.extra.heldOutAccuracy = last.accuracy;
  if (last?.margin !== undefined) store.manifest.extra.heldOutMargin = last.margin;
  if (train.data) store.manifest.extra.trainingData = train.data;
  await store.saveManifest();
  return { pairs: pairs.length, train };
}
