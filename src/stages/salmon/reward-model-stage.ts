/**
 * SALMON step 4, the principle-following reward model (method-spec B.4): every aggregated example becomes a
 * reviewer-prompt pair (the example's principles listed, negative definitions where negated), and the trainer's
 * `reward` objective fits LoRA + a scalar head on the last token's final hidden state with the pairwise logistic loss,
 * holding out a share of the pairs to report accuracy at every eval step. The folder `reward-model/` is what
 * `RewardModel.load` and `selfalign serve --reward-model` read.
 */
import { join } from "node:path";
import type { Constitution } from "../../constitution/index.js";
import { AbortedError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { recordId, type StageStore } from "../../run-store/index.js";
import type { Trainer, TrainOptions, TrainResult } from "../../training/trainer.js";
import type { AggregatedExample } from "./preference-exports.js";
import { rewardPair } from "./preference-exports.js";

export const salmonRewardModelStage = "salmon-reward-model";

export interface RunSalmonRewardModelOptions {
  store: StageStore;
  examples: readonly AggregatedExample[];
  constitution: Constitution;
  trainer: Trainer;
  base: string;
  trainOptions: TrainOptions;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunSalmonRewardModelResult {
  /** The reward model folder (adapter.gguf, reward-head.safetensors, reward-model.json, peft/, loss and eval logs). */
  dir: string;
  pairs: number;
  train: TrainResult;
}

export const rewardModelDir = (store: StageStore) => join(store.dir, "reward-model");

export async function runSalmonRewardModel(options: RunSalmonRewardModelOptions): Promise<RunSalmonRewardModelResult> {
  const { store, constitution } = options;
  if (options.examples.length === 0) {
    throw new ConfigError(
      "salmon-reward-model: salmon-aggregate has no examples to train on; run it (and the SALMON stages before it) first",
      { path: store.dir },
    );
  }
  const pairs = options.examples.map((example) => ({
    id: recordId(salmonRewardModelStage, example.id),
    parentId: example.id,
    principles: [...example.principles],
    negated: [...example.negated],
    ...rewardPair(example, constitution),
  }));
  // The training set is stored as the folder's records (with the run's provenance), as engraving stores its SFT set.
  for (const pair of pairs) if (!store.isDone(pair.id)) await store.appendRecord(pair);
  await store.saveManifest();
  if (options.signal?.aborted) throw new AbortedError();
  const dir = rewardModelDir(store);
  const train = await options.trainer.train({
    kind: "reward",
    base: options.base,
    output: dir,
    examples: pairs.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected })),
    options: { resume: true, ...options.trainOptions },
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const last = train.evalCurve.at(-1);
  // Not `adapter`: that names the policy adapter a pipeline ends with; this is a reward model.
  store.manifest.extra.rewardModel = dir;
  store.manifest.extra.finalLoss = train.finalLoss;
  if (last?.accuracy !== undefined) store.manifest.extra.heldOutAccuracy = last.accuracy;
  await store.saveManifest();
  return { dir, pairs: pairs.length, train };
}
