/**
 * Preference optimisation on (prompt, chosen, rejected) pairs against a frozen reference policy (the same base with
 * the reference adapter, or none): DPO's loss −log σ(β[(π_c − ρ_c) − (π_r − ρ_r)]) on summed completion
 * log-probabilities, with label smoothing (conservative DPO), or IPO's squared loss on per-token means. The
 * reference log-probs are computed once, when the model is attached (they never change).
 */
import { ConfigError } from "../../../errors/index.js";
import {
  type Examples,
  type PreferenceExample,
  type PreferenceLoss,
  type PreferenceOptions,
  preferenceLosses,
  preferenceOptionDefaults,
} from "../../trainer.js";
import { copyAdapter, loadAdapter } from "../adapter-source.js";
import type { LlamaTrainModel } from "../llama-train-model.js";
import type { LoraAdapter } from "../lora.js";
import { sigmoid, softplus } from "../ops.js";
import type { TokenizedPair } from "../preference-dataset.js";
import { packSequences, sequenceLogProbLoss, sequenceLogProbs } from "../sequence-log-probs.js";
import type { ObjectiveBuildContext } from "./build-context.js";
import { pairData } from "./pair-data.js";
import { type Objective, orderedBatches, sequencesHash, type Split } from "./objective.js";

export interface ResolvedPreferenceOptions {
  beta: number;
  loss: PreferenceLoss;
  labelSmoothing: number;
  reference: NonNullable<PreferenceOptions["reference"]>;
}

export function resolvePreferenceOptions(options: PreferenceOptions = {}): ResolvedPreferenceOptions {
  const p = {
    ...preferenceOptionDefaults,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
  } as ResolvedPreferenceOptions;
  if (!(p.beta > 0)) throw new ConfigError(`preference.beta must be > 0, got ${p.beta}`, { field: "preference.beta" });
  if (!preferenceLosses.includes(p.loss)) {
    throw new ConfigError(`preference.loss must be one of ${preferenceLosses.join(", ")}, got ${String(p.loss)}`, {
      field: "preference.loss",
    });
  }
  if (!(p.labelSmoothing >= 0 && p.labelSmoothing < 0.5)) {
    throw new ConfigError(`preference.labelSmoothing must be in [0, 0.5), got ${p.labelSmoothing}`, {
      field: "preference.labelSmoothing",
    });
  }
  if (p.labelSmoothing > 0 && p.loss !== "sigmoid") {
    throw new ConfigError("preference.labelSmoothing applies to the sigmoid (DPO) loss only", {
      field: "preference.labelSmoothing",
    });
  }
  const ref = p.reference as unknown;
  if (ref !== "init" && ref !== "base" && typeof (ref as { adapter?: unknown })?.adapter !== "string") {
    throw new ConfigError('preference.reference must be "init", "base" or { adapter: <path> }', {
      field: "preference.reference",
    });
  }
  return p;
}

/** Log-probabilities of one pair's completions under the policy and the reference, and the completion lengths. */
export interface PairLogProbs {
  policyChosen: number;
  policyRejected: number;
  referenceChosen: number;
  referenceRejected: number;
  chosenTokens: number;
  rejectedTokens: number;
}

export interface PairLoss {
  loss: number;
  /** d(loss)/d(policyChosen) and d(loss)/d(policyRejected). */
  dChosen: number;
  dRejected: number;
  /** The implicit rewards β·(log π − log π_ref) (IPO: of the per-token means). */
  chosenReward: number;
  rejectedReward: number;
}

/** The loss of one pair in closed form, and its derivatives with respect to the policy's log-probs. */
export function preferencePairLoss(
  x: PairLogProbs,
  p: Pick<ResolvedPreferenceOptions, "beta" | "loss" | "labelSmoothing">,
): PairLoss {
  if (p.loss === "ipo") {
    // IPO (Azar et al.): (h − 1/(2β))² with h the log-ratio difference of per-token mean log-probs.
    const chosen = (x.policyChosen - x.referenceChosen) / x.chosenTokens;
    const rejected = (x.policyRejected - x.referenceRejected) / x.rejectedTokens;
    const h = chosen - rejected;
    const d = 2 * (h - 1 / (2 * p.beta));
    return {
      loss: (h - 1 / (2 * p.beta)) ** 2,
      dChosen: d / x.chosenTokens,
      dRejected: -d / x.rejectedTokens,
      chosenReward: p.beta * chosen,
      rejectedReward: p.beta * rejected,
    };
  }
  const chosenReward = p.beta * (x.policyChosen - x.referenceChosen);
  const rejectedReward = p.beta * (x.policyRejected - x.referenceRejected);
  const h = chosenReward - rejectedReward;
  const e = p.labelSmoothing;
  // −(1 − ε) log σ(h) − ε log σ(−h).
  const loss = (1 - e) * softplus(-h) + e * softplus(h);
  const dh = -(1 - e) * sigmoid(-h) + e * sigmoid(h);
  return { loss, dChosen: p.beta * dh, dRejected: -p.beta * dh, chosenReward, rejectedReward };
}

export async function buildPreferenceObjective(
  examples: Examples<PreferenceExample>,
  evalExamples: Examples<PreferenceExample> | undefined,
  settings: PreferenceOptions | undefined,
  build: ObjectiveBuildContext,
): Promise<Objective> {
  const p = resolvePreferenceOptions(settings);
  const { options, config } = build;
  const { data, warnings, dataCounts } = await pairData(examples, evalExamples, build);

  // The reference is read (and copied) now: the policy's own arrays, when it starts from the same adapter, are
  // trained in place.
  let reference: LoraAdapter | undefined;
  let referenceId: string;
  if (p.reference === "base" || (p.reference === "init" && !build.init)) {
    referenceId = "base";
  } else if (p.reference === "init") {
    reference = copyAdapter(build.init!.adapter);
    referenceId = build.init!.hash;
  } else {
    const loaded = await loadAdapter(p.reference.adapter, config);
    reference = loaded.adapter;
    referenceId = loaded.hash;
  }

  const rowsOf = (pair: TokenizedPair) => pair.chosen.tokens.length - 1 + pair.rejected.tokens.length - 1;
  const rows = { train: data.train.map(rowsOf), eval: data.eval.map(rowsOf) };
  // Reference log-probs, chosen then rejected per pair; filled by attach().
  const referenceLogProbs: Record<Split, Float64Array> = {
    train: new Float64Array(2 * data.train.length),
    eval: new Float64Array(2 * data.eval.length),
  };
  const sequencesOf = (pairs: TokenizedPair[]) => pairs.flatMap((pair) => [pair.chosen, pair.rejected]);
  const asItems = (pairs: TokenizedPair[]) =>
    pairs.map((pair) => ({ index: pair.index, sequences: [pair.chosen, pair.rejected] }));

  return {
    kind: "preference",
    trainRows: rows.train,
    evalRows: rows.eval,
    params: [],
    grads: [],
    fingerprint: {
      examples: data.train.length,
      data: sequencesHash(asItems(data.train)),
      heldOut: data.eval.length,
      heldOutData: sequencesHash(asItems(data.eval)),
      beta: p.beta,
      loss: p.loss,
      labelSmoothing: p.labelSmoothing,
      reference: referenceId,
    },
    warnings,
    dataCounts,
    attach(model: LlamaTrainModel) {
      for (const splitName of ["train", "eval"] as const) {
        // A fixed packing, so the values do not depend on the training order (exact resume).
        for (const batch of orderedBatches(rows[splitName], options.batchTokens)) {
          const scored = sequenceLogProbs(model, sequencesOf(batch.map((i) => data[splitName][i]!)), reference);
          batch.forEach((item, k) => {
            referenceLogProbs[splitName][2 * item] = scored[2 * k]!.total;
            referenceLogProbs[splitName][2 * item + 1] = scored[2 * k + 1]!.total;
          });
        }
      }
    },
    normaliser: (_split, items) => items.length,
    run({ model, lora, grads, options: lossOptions }, splitName, items, normaliser) {
      const pairs = items.map((i) => data[splitName][i]!);
      const batch = packSequences(sequencesOf(pairs));
      const metrics = { pairs: items.length, correct: 0, margin: 0 };
      const output = sequenceLogProbLoss(batch, model.config.vocabSize, (sums) => {
        const dSums = new Float64Array(sums.length);
        let loss = 0;
        items.forEach((item, k) => {
          const pair = preferencePairLoss(
            {
              policyChosen: sums[2 * k]!,
              policyRejected: sums[2 * k + 1]!,
              referenceChosen: referenceLogProbs[splitName][2 * item]!,
              referenceRejected: referenceLogProbs[splitName][2 * item + 1]!,
              chosenTokens: batch.lengths[2 * k]!,
              rejectedTokens: batch.lengths[2 * k + 1]!,
            },
            p,
          );
          loss += pair.loss / normaliser;
          dSums[2 * k] = pair.dChosen / normaliser;
          dSums[2 * k + 1] = pair.dRejected / normaliser;
          metrics.margin += pair.chosenReward - pair.rejectedReward;
          if (pair.chosenReward > pair.rejectedReward) metrics.correct++;
        });
        return { loss, dSums };
      });
      const loss = model.forwardBackward(batch, lora, grads, output, lossOptions);
      return { loss, tokens: batch.tokens.length, ...metrics };
    },
  };
}
