/** AdamW (decoupled weight decay, as torch.optim.AdamW), global-norm clipping and the learning-rate schedule. */
import type { LearningRateSchedule } from "../trainer.js";
import type { Vec } from "./ops.js";

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const defaultAdamW: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

/** One update of every parameter array; `step` is 1-based (bias correction). */
export function adamWStep(
  params: Vec[],
  grads: Vec[],
  m: Vec[],
  v: Vec[],
  step: number,
  learningRate: number,
  options: AdamWOptions,
): void {
  const { beta1, beta2, eps, weightDecay } = options;
  const c1 = 1 - beta1 ** step;
  const c2 = 1 - beta2 ** step;
  for (let a = 0; a < params.length; a++) {
    const p = params[a]!;
    const g = grads[a]!;
    const ma = m[a]!;
    const va = v[a]!;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i]!;
      const mi = beta1 * ma[i]! + (1 - beta1) * gi;
      const vi = beta2 * va[i]! + (1 - beta2) * gi * gi;
      ma[i] = mi;
      va[i] = vi;
      p[i] = p[i]! * (1 - learningRate * weightDecay) - (learningRate * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
    }
  }
}

/** Scales the gradients so their global L2 norm is at most maxNorm (0 = no clipping); returns the norm before. */
export function clipGradientNorm(grads: Vec[], maxNorm: number): number {
  let sum = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sum += g[i]! * g[i]!;
  const norm = Math.sqrt(sum);
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] = g[i]! * scale;
  }
  return norm;
}

/** Learning rate of 0-based optimizer step `step` of `total`: linear warm-up, then cosine, linear or constant. */
export function learningRateAt(
  step: number,
  total: number,
  peak: number,
  warmup: number,
  schedule: LearningRateSchedule,
): number {
  if (step < warmup) return (peak * (step + 1)) / warmup;
  if (schedule === "constant") return peak;
  const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  if (schedule === "linear") return peak * (1 - progress);
  return peak * 0.5 * (1 + Math.cos(Math.PI * progress));
}
