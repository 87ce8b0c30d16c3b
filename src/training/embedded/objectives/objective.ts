/**
 * What a training kind plugs into the shared step loop of the embedded trainer: its tokenised items (batched by
 * length), the loss of a micro-batch through `LlamaTrainModel.forwardBackward`, its own trainable arrays (the reward
 * head) and its part of the checkpoint fingerprint. Schedule, accumulation, clipping, checkpoints and export are
 * the trainer's and the same for every kind.
 */
import { createHash } from "node:crypto";
import { seededRandom } from "../../../gguf/index.js";
import type { TrainDataCounts, TrainKind } from "../../trainer.js";
import { hashSeed, type LlamaTrainModel, type LossOptions } from "../llama-train-model.js";
import type { LoraAdapter } from "../lora.js";
import type { Vec } from "../ops.js";

export type Split = "train" | "eval";

export interface ObjectiveContext {
  model: LlamaTrainModel;
  lora: LoraAdapter;
  /** In a training step: LoRA gradients are added here, and the objective's own into its `grads`. */
  grads?: LoraAdapter;
  options: LossOptions;
}

/** Sums over a micro-batch, added up by the trainer over a step or over the held-out set. */
export interface BatchMetrics {
  /** The loss, already divided by the normaliser of the whole step (or held-out set). */
  loss: number;
  /** Token rows in the forward. */
  tokens: number;
  /** Pairs kinds: pairs seen, pairs whose chosen response got the higher reward, and the sum of their margins. */
  pairs: number;
  correct: number;
  margin: number;
}

export interface Objective {
  readonly kind: TrainKind;
  /** Batch rows each training item takes (what length bucketing packs by). */
  readonly trainRows: readonly number[];
  /** Batch rows of each held-out item. */
  readonly evalRows: readonly number[];
  /** Trainable arrays besides the LoRA (the reward head), in checkpoint order, and their gradients. */
  readonly params: Vec[];
  readonly grads: Vec[];
  /** The data and settings a checkpoint must share with this run to be resumed. */
  readonly fingerprint: Record<string, unknown>;
  /** Warnings from tokenisation, shown as progress messages. */
  readonly warnings: readonly string[];
  /** Training items used, and how many were cut at cutoffLen or left out (too long, or nothing to learn). */
  readonly dataCounts: TrainDataCounts;
  /** Called once the frozen weights are loaded (preference: the reference log-probs are computed here). */
  attach?(model: LlamaTrainModel): void;
  /** What the summed loss of a step (or of the held-out set) is divided by: completion tokens, or pairs. */
  normaliser(split: Split, items: readonly number[]): number;
  /** Loss and metrics of `items` of `split`; with `context.grads`, gradients too. */
  run(context: ObjectiveContext, split: Split, items: readonly number[], normaliser: number): BatchMetrics;
  /** The PEFT `score.weight` ([1, hidden], LlamaForSequenceClassification) for a sequence-classification export. */
  peftScore?(): Float32Array;
  /** Files besides the adapter, written at export; returns what the result names. */
  export?(output: string): Promise<{ rewardHeadPath?: string }>;
}

export const noMetrics = (): BatchMetrics => ({ loss: 0, tokens: 0, pairs: 0, correct: 0, margin: 0 });

export function addMetrics(into: BatchMetrics, add: BatchMetrics): void {
  into.loss += add.loss;
  into.tokens += add.tokens;
  into.pairs += add.pairs;
  into.correct += add.correct;
  into.margin += add.margin;
}

/**
 * A seeded held-out split: `round(fraction × n)` items (at least one when fraction > 0, at most n − 1) go to eval,
 * both parts keep the input order.
 */
export function splitHeldOut<T>(items: readonly T[], fraction: number, seed: number): { train: T[]; eval: T[] } {
  if (fraction <= 0 || items.length < 2) return { train: [...items], eval: [] };
  const count = Math.min(items.length - 1, Math.max(1, Math.round(fraction * items.length)));
  const random = seededRandom(hashSeed(seed, 0x4e1d));
  const order = items.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const held = new Set(order.slice(0, count));
  return { train: items.filter((_, i) => !held.has(i)), eval: items.filter((_, i) => held.has(i)) };
}

/** SHA-256 (16 hex digits) of token sequences: a checkpoint refuses other data. */
export function sequencesHash(
  sequences: Iterable<{ index: number; sequences: Array<{ tokens: Int32Array; promptLength: number }> }>,
): string {
  const hash = createHash("sha256");
  for (const item of sequences) {
    hash.update(Int32Array.of(item.index, item.sequences.length));
    for (const s of item.sequences) {
      hash.update(Int32Array.of(s.promptLength, s.tokens.length));
      hash.update(s.tokens);
    }
  }
  return hash.digest("hex").slice(0, 16);
}

/** Item indices of a fixed-order pass (held-out evaluation, reference log-probs): in order, packed to batchTokens. */
export function orderedBatches(rows: readonly number[], batchTokens: number): number[][] {
  const batches: number[][] = [];
  let current: number[] = [];
  let tokens = 0;
  rows.forEach((length, i) => {
    if (current.length > 0 && tokens + length > batchTokens) {
      batches.push(current);
      current = [];
      tokens = 0;
    }
    current.push(i);
    tokens += length;
  });
  if (current.length > 0) batches.push(current);
  return batches;
}
