/**
 * PPO's learner on the embedded trainer (method B.5): a policy LoRA and a value model (a LoRA + a scalar head read at
 * every response token, initialised from the reward model) on one frozen base, updated from a batch of experience
 * (sampled responses with their old log-probs, old values, advantages and returns) with the clipped policy and value
 * losses. Rollouts, rewards and KL shaping are the caller's; log-probs come from `sequenceLogProbs` at the
 * sampler's temperature.
 */
import { copyAdapter, type LoadedAdapter } from "../adapter-source.js";
import { adamWStep, clipGradientNorm, defaultAdamW } from "../adamw.js";
import type { LlamaTrainModel, LossOptions, OutputLoss } from "../llama-train-model.js";
import { type LoraAdapter, loraArrays, zerosLike } from "../lora.js";
import { rewardLoss } from "../objectives/reward-objective.js";
import { tokenEntropies, type Vec } from "../ops.js";
import { logProbLoss, packSequences, type ScoredSequence, type SequenceBatch } from "../sequence-log-probs.js";
import { clippedPolicyLoss, clippedValueLoss } from "./ppo-math.js";

export interface ValueModel {
  lora: LoraAdapter;
  /** [hidden]: V_t = head · h_t. */
  head: Vec;
}

/**
 * A value model from a reward model: its LoRA copied, and a zero head (SALMON: the value model starts from the
 * reward model's backbone with a new head) or the reward head itself.
 */
export function valueModelFromReward(
  reward: LoadedAdapter,
  hidden: number,
  head: "zero" | "reward" = "zero",
): ValueModel {
  if (head === "reward" && !reward.head) {
    throw new RangeError(`${reward.source} has no reward head to start the value head from`);
  }
  return {
    lora: copyAdapter(reward.adapter),
    head: head === "reward" ? Float32Array.from(reward.head!) : new Float32Array(hidden),
  };
}

/**
 * The value loss `f(values)` over a batch's scored rows: V_t is read at the row whose logits give log π_t (the
 * state before token t), like the log-probs.
 */
export function valueLoss(
  batch: SequenceBatch,
  head: Vec,
  headGrad: Vec | undefined,
  f: (values: Float64Array) => { loss: number; dValues: Float64Array },
): OutputLoss {
  return rewardLoss(batch.rows, head, headGrad, (values) => {
    const { loss, dValues } = f(values);
    return { loss, dRewards: dValues };
  });
}

/** Per-token values of each sequence's scored tokens, no dropout. */
export function tokenValues(
  model: LlamaTrainModel,
  value: ValueModel,
  sequences: readonly ScoredSequence[],
): Float64Array[] {
  const batch = packSequences(sequences);
  let values: Float64Array | undefined;
  model.forwardBackward(
    batch,
    value.lora,
    undefined,
    valueLoss(batch, value.head, undefined, (v) => {
      values = v;
      return { loss: 0, dValues: new Float64Array(v.length) };
    }),
  );
  const result: Float64Array[] = [];
  let at = 0;
  for (let s = 0; s < batch.sequences; s++) {
    result.push(values!.slice(at, at + batch.lengths[s]!));
    at += batch.lengths[s]!;
  }
  return result;
}

/** A batch of experience; the per-token arrays run over every scored token, sequence by sequence. */
export interface PpoExperience {
  sequences: ScoredSequence[];
  oldLogProbs: ArrayLike<number>;
  oldValues: ArrayLike<number>;
  advantages: ArrayLike<number>;
  returns: ArrayLike<number>;
}

export interface PpoLearnerOptions {
  learningRate: number;
  /** Policy ratio clip ε. Default 0.2 (SALMON). */
  clip?: number;
  /** Value clip ε_v. Default 0.2 (SALMON). */
  valueClip?: number;
  /** The sampler's temperature; log-probs are of logits / temperature. Default 0.7 (SALMON). */
  temperature?: number;
  /** Global gradient-norm clip of each model. Default 1 (SALMON). */
  maxGradNorm?: number;
  /**
   * Weight of the value loss (SALMON: 0.1). The value model has its own parameters and AdamW state, so the weight
   * only matters through gradient clipping and AdamW's ε. Default 1.
   */
  valueCoefficient?: number;
  weightDecay?: number;
  /** LoRA dropout in the update. Default 0. */
  dropout?: number;
}

export interface PpoStepResult {
  policyLoss: number;
  valueLoss: number;
  clipFraction: number;
  valueClipFraction: number;
  approxKl: number;
  /** Mean entropy (nats) of the policy's next-token distribution (at the sampling temperature) over response tokens,
   * before the update: what OpenRLHF and TRL log to watch for collapse. */
  entropy: number;
  policyGradientNorm: number;
  valueGradientNorm: number;
}

/**
 * The policy's clipped surrogate over `batch`, as a logits loss; `onResult` receives its statistics, `onEntropy` the
 * mean entropy of the response tokens' distributions.
 */
export function policyLoss(
  batch: SequenceBatch,
  vocab: number,
  experience: Pick<PpoExperience, "oldLogProbs" | "advantages">,
  clip: number,
  temperature: number,
  onResult?: (result: ReturnType<typeof clippedPolicyLoss>) => void,
  onEntropy?: (entropy: number) => void,
): OutputLoss {
  const surrogate = logProbLoss(
    batch,
    vocab,
    ({ tokens }) => {
      const result = clippedPolicyLoss(tokens, experience.oldLogProbs, experience.advantages, clip);
      onResult?.(result);
      return { loss: result.loss, dTokens: result.dLogProbs };
    },
    temperature,
  );
  if (!onEntropy) return surrogate;
  const inner = surrogate.loss;
  return {
    ...surrogate,
    loss: (logits, gradient) => {
      // Read before the surrogate's backward, which may write the gradient over the logits.
      const n = batch.rows.length;
      const entropies = new Float64Array(n);
      tokenEntropies(logits, n, vocab, temperature, entropies);
      onEntropy(n > 0 ? entropies.reduce((sum, h) => sum + h, 0) / n : 0);
      return inner(logits, gradient);
    },
  };
}

/** AdamW state of one set of trainable arrays and the gradient arrays the backward fills. */
class Optimised {
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  step = 0;
  constructor(
    readonly params: Vec[],
    readonly grads: Vec[],
  ) {
    this.m = params.map((p) => new Float32Array(p.length));
    this.v = params.map((p) => new Float32Array(p.length));
  }
  zero(): void {
    for (const g of this.grads) g.fill(0);
  }
  update(learningRate: number, maxGradNorm: number, weightDecay: number): number {
    const norm = clipGradientNorm(this.grads, maxGradNorm);
    this.step++;
    adamWStep(this.params, this.grads, this.m, this.v, this.step, learningRate, { ...defaultAdamW, weightDecay });
    return norm;
  }
}

export class PpoLearner {
  private readonly policyGrads: LoraAdapter;
  private readonly valueGrads: LoraAdapter;
  private readonly headGrad: Float32Array;
  private readonly policyState: Optimised;
  private readonly valueState: Optimised;
  /** Learner steps taken (the dropout seed counter); part of the state a checkpoint restores. */
  updates = 0;

  constructor(
    private readonly model: LlamaTrainModel,
    readonly policy: LoraAdapter,
    readonly value: ValueModel,
    private readonly options: PpoLearnerOptions,
  ) {
    this.policyGrads = zerosLike(policy, (n) => new Float32Array(n));
    this.valueGrads = zerosLike(value.lora, (n) => new Float32Array(n));
    this.headGrad = new Float32Array(value.head.length);
    this.policyState = new Optimised(loraArrays(policy), loraArrays(this.policyGrads));
    this.valueState = new Optimised(
      [...loraArrays(value.lora), value.head],
      [...loraArrays(this.valueGrads), this.headGrad],
    );
  }

  /**
   * Every trainable array (policy LoRA, value LoRA, value head) with its AdamW moments, in a fixed order: what a
   * checkpoint saves and loads in place. `optimizerSteps` goes with them.
   */
  checkpointArrays(): { params: Vec[]; m: Vec[]; v: Vec[] } {
    return {
      params: [...this.policyState.params, ...this.valueState.params],
      m: [...this.policyState.m, ...this.valueState.m],
      v: [...this.policyState.v, ...this.valueState.v],
    };
  }

  /** AdamW's step counters of the policy and the value model (they move together). */
  get optimizerSteps(): number {
    return this.policyState.step;
  }
  set optimizerSteps(steps: number) {
    this.policyState.step = steps;
    this.valueState.step = steps;
  }

  /** One optimizer step of the policy (clipped surrogate) and of the value model (clipped value loss). */
  step(experience: PpoExperience, learningRate = this.options.learningRate): PpoStepResult {
    const o = this.options;
    const batch = packSequences(experience.sequences);
    const n = batch.rows.length;
    for (const [name, array] of Object.entries({
      oldLogProbs: experience.oldLogProbs,
      oldValues: experience.oldValues,
      advantages: experience.advantages,
      returns: experience.returns,
    })) {
      if (array.length !== n) throw new RangeError(`${name} has ${array.length} values for ${n} response tokens`);
    }
    const lossOptions: LossOptions = { dropout: o.dropout ?? 0, dropoutSeed: this.updates++, checkpoint: "auto" };
    let policyStats: ReturnType<typeof clippedPolicyLoss> | undefined;
    let entropy = 0;
    this.policyState.zero();
    const pLoss = this.model.forwardBackward(
      batch,
      this.policy,
      this.policyGrads,
      policyLoss(
        batch,
        this.model.config.vocabSize,
        experience,
        o.clip ?? 0.2,
        o.temperature ?? 0.7,
        (r) => {
          policyStats = r;
        },
        (h) => {
          entropy = h;
        },
      ),
      lossOptions,
    );
    let valueClipFraction = 0;
    let vLoss = 0;
    this.valueState.zero();
    this.model.forwardBackward(
      batch,
      this.value.lora,
      this.valueGrads,
      valueLoss(batch, this.value.head, this.headGrad, (values) => {
        const r = clippedValueLoss(values, experience.oldValues, experience.returns, o.valueClip ?? 0.2);
        valueClipFraction = r.clipFraction;
        vLoss = r.loss;
        const weight = o.valueCoefficient ?? 1;
        if (weight !== 1) for (let t = 0; t < r.dValues.length; t++) r.dValues[t] = r.dValues[t]! * weight;
        return { loss: weight * r.loss, dValues: r.dValues };
      }),
      lossOptions,
    );
    const maxGradNorm = o.maxGradNorm ?? 1;
    const weightDecay = o.weightDecay ?? 0;
    return {
      policyLoss: pLoss,
      valueLoss: vLoss,
      clipFraction: policyStats!.clipFraction,
      valueClipFraction,
      approxKl: policyStats!.approxKl,
      entropy,
      policyGradientNorm: this.policyState.update(learningRate, maxGradNorm, weightDecay),
      valueGradientNorm: this.valueState.update(learningRate, maxGradNorm, weightDecay),
    };
  }
}
