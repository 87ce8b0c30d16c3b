/** The tokens a LoRA training goes through, for a stage's estimate: examples x length x epochs, capped by maxSteps. */
import type { TrainConfig } from "../../pipeline/train-config.js";

export interface TrainingAmount {
  examples: number;
  /** Tokens of one example (prompt + answer) before the cut at cutoffLen. */
  exampleTokens: number;
  /** The model's context (the trainer's default cutoffLen). */
  modelContext?: number;
}

export function trainingTokens(train: TrainConfig, amount: TrainingAmount): number {
  const cutoff = train.cutoffLen ?? amount.modelContext ?? Number.POSITIVE_INFINITY;
  const perEpoch = amount.examples * Math.min(cutoff, amount.exampleTokens);
  const total = perEpoch * (train.epochs ?? 1);
  if (train.maxSteps === undefined) return Math.round(total);
  const perStep = (train.batchTokens ?? 2048) * (train.gradientAccumulation ?? 1);
  return Math.round(Math.min(total, train.maxSteps * perStep));
}
