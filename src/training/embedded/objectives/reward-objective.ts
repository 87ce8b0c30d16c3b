/**
 * A reward model (method B.4): LoRA + a scalar head r = w · h on the final normed hidden state h of each sequence's
 * last real token (sequences are packed, so "last" is the true end, never a pad), trained with the pairwise
 * logistic loss −log σ(r_chosen − r_rejected) averaged over a step's pairs. The head (no bias, as the reference
 * fixes it at 0) is trained with the LoRA by the same optimizer and saved in checkpoints with it.
 */
import { writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { seededRandom } from "../../../gguf/index.js";
import type { Examples, PreferenceExample } from "../../trainer.js";
import { rewardHeadFile, writeRewardHead } from "../../reward/reward-head.js";
import { rewardModelFile, type RewardModelInfo } from "../../reward/reward-model-info.js";
import { hashSeed, type ModelInput, type OutputLoss } from "../llama-train-model.js";
import { sigmoid, softplus, type Vec } from "../ops.js";
import type { TokenizedPair } from "../preference-dataset.js";
import type { TokenizedSequence } from "../sft-dataset.js";
import type { ObjectiveBuildContext } from "./build-context.js";
import { pairData } from "./pair-data.js";
import { type Objective, sequencesHash } from "./objective.js";

/** Whole sequences packed back to back (every token is input), and the row of each one's last token. */
export function packWhole(sequences: ReadonlyArray<{ tokens: Int32Array }>): ModelInput & { lastRows: Int32Array } {
  const total = sequences.reduce((sum, s) => sum + s.tokens.length, 0);
  const tokens = new Int32Array(total);
  const positions = new Int32Array(total);
  const starts = new Int32Array(sequences.length + 1);
  const lastRows = new Int32Array(sequences.length);
  let at = 0;
  sequences.forEach((sequence, s) => {
    starts[s] = at;
    tokens.set(sequence.tokens, at);
    for (let t = 0; t < sequence.tokens.length; t++) positions[at + t] = t;
    at += sequence.tokens.length;
    lastRows[s] = at - 1;
  });
  starts[sequences.length] = at;
  return { tokens, positions, segments: { starts }, lastRows };
}

/**
 * The hidden-state loss of `f(rewards)` with r_s = head · h_s at the given rows; in a backward, d(loss)/d(head) is
 * added into `headGrad`.
 */
export function rewardLoss(
  rows: Int32Array,
  head: Vec,
  headGrad: Vec | undefined,
  f: (rewards: Float64Array) => { loss: number; dRewards: Float64Array },
): OutputLoss {
  const dim = head.length;
  return {
    over: "hidden",
    rows,
    loss: (hidden, gradient) => {
      const rewards = new Float64Array(rows.length);
      for (let s = 0; s < rows.length; s++) {
        let r = 0;
        for (let j = 0; j < dim; j++) r += head[j]! * hidden[s * dim + j]!;
        rewards[s] = r;
      }
      const { loss, dRewards } = f(rewards);
      if (gradient) {
        for (let s = 0; s < rows.length; s++) {
          const d = dRewards[s]!;
          for (let j = 0; j < dim; j++) {
            gradient[s * dim + j] = d * head[j]!;
            if (headGrad) headGrad[j] = headGrad[j]! + d * hidden[s * dim + j]!;
          }
        }
      }
      return loss;
    },
  };
}

/** The pairwise logistic loss of rewards laid out chosen, rejected per pair, each pair's loss divided by `normaliser`. */
export function pairwiseLogisticLoss(
  rewards: Float64Array,
  normaliser: number,
): { loss: number; dRewards: Float64Array; correct: number; margin: number } {
  const dRewards = new Float64Array(rewards.length);
  let loss = 0;
  let correct = 0;
  let margin = 0;
  for (let k = 0; 2 * k < rewards.length; k++) {
    const delta = rewards[2 * k]! - rewards[2 * k + 1]!;
    loss += softplus(-delta) / normaliser;
    const d = -sigmoid(-delta) / normaliser;
    dRewards[2 * k] = d;
    dRewards[2 * k + 1] = -d;
    margin += delta;
    if (delta > 0) correct++;
  }
  return { loss, dRewards, correct, margin };
}

export async function buildRewardObjective(
  examples: Examples<PreferenceExample>,
  evalExamples: Examples<PreferenceExample> | undefined,
  build: ObjectiveBuildContext,
): Promise<Objective> {
  const { options, config } = build;
  const { data, warnings, dataCounts } = await pairData(examples, evalExamples, build);

  // torch.nn.Linear's default init (uniform within 1/sqrt(fan_in)), or the head of the reward model we start from.
  const head = new Float32Array(config.dim);
  if (build.init?.head) head.set(build.init.head);
  else {
    const random = seededRandom(hashSeed(options.seed, 0x4ead));
    const bound = 1 / Math.sqrt(config.dim);
    for (let j = 0; j < head.length; j++) head[j] = (2 * random() - 1) * bound;
  }
  const headGrad = new Float32Array(config.dim);
  const sequencesOf = (pairs: TokenizedPair[]): TokenizedSequence[] =>
    pairs.flatMap((pair) => [pair.chosen, pair.rejected]);
  const rowsOf = (pair: TokenizedPair) => pair.chosen.tokens.length + pair.rejected.tokens.length;
  const asItems = (pairs: TokenizedPair[]) =>
    pairs.map((pair) => ({ index: pair.index, sequences: [pair.chosen, pair.rejected] }));

  return {
    kind: "reward",
    trainRows: data.train.map(rowsOf),
    evalRows: data.eval.map(rowsOf),
    params: [head],
    grads: [headGrad],
    fingerprint: {
      examples: data.train.length,
      data: sequencesHash(asItems(data.train)),
      heldOut: data.eval.length,
      heldOutData: sequencesHash(asItems(data.eval)),
      head: build.init?.head ? "initAdapter" : "fresh",
    },
    warnings,
    dataCounts,
    normaliser: (_split, items) => items.length,
    run({ model, lora, grads, options: lossOptions }, splitName, items, normaliser) {
      const batch = packWhole(sequencesOf(items.map((i) => data[splitName][i]!)));
      let metrics = { correct: 0, margin: 0 };
      const output = rewardLoss(batch.lastRows, head, grads ? headGrad : undefined, (rewards) => {
        const { loss, dRewards, correct, margin } = pairwiseLogisticLoss(rewards, normaliser);
        metrics = { correct, margin };
        return { loss, dRewards };
      });
      const loss = model.forwardBackward(batch, lora, grads, output, lossOptions);
      return { loss, tokens: batch.tokens.length, pairs: items.length, ...metrics };
    },
    peftScore: () => Float32Array.from(head),
    async export(output: string) {
      const rewardHeadPath = join(output, rewardHeadFile);
      await writeRewardHead(rewardHeadPath, head);
      const info: RewardModelInfo = {
        format: "selfalign-reward-model",
        version: 1,
        base: basename(build.base),
        basePath: resolve(build.base),
        adapter: "adapter.gguf",
        head: rewardHeadFile,
        hidden: config.dim,
        addBos: build.tokenizer.bos !== undefined,
      };
      await writeFile(join(output, rewardModelFile), `${JSON.stringify(info, null, 2)}\n`);
      return { rewardHeadPath };
    },
  };
}
