/**
 * The arithmetic of PPO (method B.5) as pure functions over one batch's per-token arrays: generalised advantage
 * estimation, whitening, and the clipped policy and value losses with their gradients (what the model's backward
 * needs: d(loss)/d(log-prob) and d(loss)/d(value) per token).
 */

export interface GaeOptions {
  /** Discount. SALMON: 1. */
  gamma: number;
  /** GAE λ. SALMON: 1. */
  lambda: number;
}

/**
 * Advantages and returns of one response: δ_t = r_t + γ V_{t+1} − V_t (V after the last token is 0),
 * A_t = δ_t + γλ A_{t+1}, returns R_t = A_t + V_t.
 */
export function gae(
  rewards: ArrayLike<number>,
  values: ArrayLike<number>,
  { gamma, lambda }: GaeOptions,
): { advantages: Float64Array; returns: Float64Array } {
  if (rewards.length !== values.length) {
    throw new RangeError(`gae: ${rewards.length} rewards but ${values.length} values`);
  }
  const n = rewards.length;
  const advantages = new Float64Array(n);
  const returns = new Float64Array(n);
  let next = 0;
  for (let t = n - 1; t >= 0; t--) {
    const nextValue = t + 1 < n ? values[t + 1]! : 0;
    const delta = rewards[t]! + gamma * nextValue - values[t]!;
    next = delta + gamma * lambda * next;
    advantages[t] = next;
    returns[t] = next + values[t]!;
  }
  return { advantages, returns };
}

export interface WhitenOptions {
  /** Keep the mean (only scale) when false. Default true. */
  shiftMean?: boolean;
  /** Bessel-corrected variance (TRL) instead of the population variance (AlpacaFarm, SALMON's base). Default false. */
  unbiased?: boolean;
  /** Added to the variance. Default 1e-8. */
  epsilon?: number;
}

/** (x − mean) / sqrt(var + ε) over all the values given (a whole batch: SALMON whitens across the global batch). */
export function whiten(values: ArrayLike<number>, options: WhitenOptions = {}): Float64Array {
  const n = values.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += values[i]!;
  mean /= n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += (values[i]! - mean) ** 2;
  const variance = squares / (options.unbiased ? n - 1 : n);
  const scale = 1 / Math.sqrt(variance + (options.epsilon ?? 1e-8));
  const shift = options.shiftMean ?? true;
  return Float64Array.from({ length: n }, (_, i) => (values[i]! - mean) * scale + (shift ? 0 : mean));
}

export interface PolicyLossResult {
  /** mean_t max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε, 1 + ε)), ρ_t = exp(log π_t − log π_old,t). */
  loss: number;
  dLogProbs: Float64Array;
  /** Share of tokens where the clipped term was the larger. */
  clipFraction: number;
  /** mean of ½ (log π − log π_old)², the usual estimate of KL(old ‖ new). */
  approxKl: number;
}

/** PPO's clipped surrogate over all tokens of a batch (mean over tokens), and d(loss)/d(log π_t). */
export function clippedPolicyLoss(
  logProbs: ArrayLike<number>,
  oldLogProbs: ArrayLike<number>,
  advantages: ArrayLike<number>,
  clip: number,
): PolicyLossResult {
  const n = logProbs.length;
  const dLogProbs = new Float64Array(n);
  let loss = 0;
  let clipped = 0;
  let kl = 0;
  for (let t = 0; t < n; t++) {
    const diff = logProbs[t]! - oldLogProbs[t]!;
    const ratio = Math.exp(diff);
    const a = advantages[t]!;
    const unclippedTerm = -a * ratio;
    const clippedTerm = -a * Math.min(Math.max(ratio, 1 - clip), 1 + clip);
    kl += 0.5 * diff * diff;
    if (unclippedTerm >= clippedTerm) {
      loss += unclippedTerm;
      dLogProbs[t] = (-a * ratio) / n;
    } else {
      loss += clippedTerm;
      clipped++;
      // The clipped term is flat outside [1 − ε, 1 + ε]: no gradient there.
      dLogProbs[t] = ratio > 1 - clip && ratio < 1 + clip ? (-a * ratio) / n : 0;
    }
  }
  return { loss: loss / n, dLogProbs, clipFraction: clipped / n, approxKl: kl / n };
}

export interface ValueLossResult {
  /** ½ mean_t max((V_t − R_t)², (V_old,t + clip(V_t − V_old,t, ±ε) − R_t)²). */
  loss: number;
  dValues: Float64Array;
  clipFraction: number;
}

/** PPO's clipped value loss over all tokens of a batch, and d(loss)/d(V_t). */
export function clippedValueLoss(
  values: ArrayLike<number>,
  oldValues: ArrayLike<number>,
  returns: ArrayLike<number>,
  clip: number,
): ValueLossResult {
  const n = values.length;
  const dValues = new Float64Array(n);
  let loss = 0;
  let clipped = 0;
  for (let t = 0; t < n; t++) {
    const v = values[t]!;
    const change = v - oldValues[t]!;
    const vClipped = oldValues[t]! + Math.min(Math.max(change, -clip), clip);
    const plain = (v - returns[t]!) ** 2;
    const limited = (vClipped - returns[t]!) ** 2;
    if (plain >= limited) {
      loss += 0.5 * plain;
      dValues[t] = (v - returns[t]!) / n;
    } else {
      loss += 0.5 * limited;
      clipped++;
      dValues[t] = change > -clip && change < clip ? (vClipped - returns[t]!) / n : 0;
    }
  }
  return { loss: loss / n, dValues, clipFraction: clipped / n };
}

export interface TokenRewardOptions {
  /** Per-token penalty weight on the KL estimate. SALMON: 0.01 (fixed). */
  klCoefficient: number;
  /** Penalise max(log π − log π_ref, 0) (SALMON) instead of the plain log-ratio. */
  klClamp: boolean;
  /** The sequence reward is multiplied by this. Default 1 (the reference's ×10 was a silent side effect). */
  rewardScale?: number;
}

/**
 * Per-token rewards of one response: −coefficient × KL estimate on every token, and the sequence reward added at
 * the response's last real token (the reference added it at the last padded position, past the end of short
 * responses). Also the summed log-ratio (the KL estimate) and the summed penalised KL.
 */
export function tokenRewards(
  logProbs: ArrayLike<number>,
  refLogProbs: ArrayLike<number>,
  sequenceReward: number,
  options: TokenRewardOptions,
): { rewards: Float64Array; kl: number; klPenalty: number } {
  const n = logProbs.length;
  if (n === 0 || refLogProbs.length !== n)
    throw new RangeError(`tokenRewards: ${n} log-probs and ${refLogProbs.length} reference log-probs`);
  const rewards = new Float64Array(n);
  let kl = 0;
  let klPenalty = 0;
  for (let t = 0; t < n; t++) {
    const logRatio = logProbs[t]! - refLogProbs[t]!;
    const penalised = options.klClamp ? Math.max(logRatio, 0) : logRatio;
    kl += logRatio;
    klPenalty += penalised;
    rewards[t] = -options.klCoefficient * penalised;
  }
  rewards[n - 1] = rewards[n - 1]! + (options.rewardScale ?? 1) * sequenceReward;
  return { rewards, kl, klPenalty };
}
