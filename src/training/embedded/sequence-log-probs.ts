/**
 * Log-probabilities of completions under the model with any adapter (or none: the base, or a frozen reference
 * adapter), and losses over them plugged into `forwardBackward`: DPO compares summed sequence log-probs, PPO uses them
 * per token (with a temperature divisor, as the sampler saw the logits).
 */
import type { LlamaTrainModel, ModelInput, OutputLoss } from "./llama-train-model.js";
import type { LoraAdapter } from "./lora.js";
import { tokenLogProbs, tokenLogProbsBackward } from "./ops.js";

export interface ScoredSequence {
  /** BOS + prompt + completion. */
  tokens: Int32Array;
  /** Tokens before the scored completion (at least 1: the first token is never predicted). */
  promptLength: number;
}

/** Sequences packed back to back like SFT batches: row t of a sequence predicts its token t + 1. */
export interface SequenceBatch extends ModelInput {
  sequences: number;
  /** The rows whose next token is scored (it belongs to the completion), sequence by sequence. */
  rows: Int32Array;
  /** Next token of each scored row. */
  targets: Int32Array;
  /** Sequence of each scored row. */
  sequenceOf: Int32Array;
  /** Scored tokens of each sequence. */
  lengths: Int32Array;
}

export function packSequences(sequences: readonly ScoredSequence[]): SequenceBatch {
  const total = sequences.reduce((sum, s) => sum + s.tokens.length - 1, 0);
  const tokens = new Int32Array(total);
  const positions = new Int32Array(total);
  const starts = new Int32Array(sequences.length + 1);
  const rows: number[] = [];
  const targets: number[] = [];
  const sequenceOf: number[] = [];
  const lengths = new Int32Array(sequences.length);
  let at = 0;
  sequences.forEach((sequence, s) => {
    if (sequence.promptLength < 1 || sequence.promptLength >= sequence.tokens.length) {
      throw new RangeError(
        `sequence ${s}: promptLength ${sequence.promptLength} leaves no scored token of ${sequence.tokens.length}`,
      );
    }
    starts[s] = at;
    const n = sequence.tokens.length - 1;
    for (let t = 0; t < n; t++) {
      tokens[at + t] = sequence.tokens[t]!;
      positions[at + t] = t;
      if (t + 1 >= sequence.promptLength) {
        rows.push(at + t);
        targets.push(sequence.tokens[t + 1]!);
        sequenceOf.push(s);
        lengths[s] = lengths[s]! + 1;
      }
    }
    at += n;
  });
  starts[sequences.length] = at;
  return {
    tokens,
    positions,
    segments: { starts },
    sequences: sequences.length,
    rows: Int32Array.from(rows),
    targets: Int32Array.from(targets),
    sequenceOf: Int32Array.from(sequenceOf),
    lengths,
  };
}

/** Log-probs of a batch's scored tokens: per scored row, and summed per sequence. */
export interface BatchLogProbs {
  tokens: Float64Array;
  sums: Float64Array;
}

/** A loss of the log-probs and its gradient with respect to each scored token's log-prob. */
export type LogProbObjective = (logProbs: BatchLogProbs) => { loss: number; dTokens: Float64Array };

/**
 * The logits loss `f(log-probs)` over `batch`'s scored rows, log p computed from logits / `temperature`.
 */
export function logProbLoss(batch: SequenceBatch, vocab: number, f: LogProbObjective, temperature = 1): OutputLoss {
  const n = batch.rows.length;
  return {
    over: "logits",
    rows: batch.rows,
    loss: (logits, gradient) => {
      const tokens = new Float64Array(n);
      tokenLogProbs(logits, batch.targets, n, vocab, temperature, tokens);
      const sums = new Float64Array(batch.sequences);
      for (let i = 0; i < n; i++) sums[batch.sequenceOf[i]!] = sums[batch.sequenceOf[i]!]! + tokens[i]!;
      const { loss, dTokens } = f({ tokens, sums });
      if (gradient) tokenLogProbsBackward(logits, batch.targets, dTokens, n, vocab, temperature, gradient);
      return loss;
    },
  };
}

/** `logProbLoss` for a loss of the per-sequence sums only: each token's gradient is its sequence's. */
export function sequenceLogProbLoss(
  batch: SequenceBatch,
  vocab: number,
  f: (sums: Float64Array) => { loss: number; dSums: Float64Array },
  temperature = 1,
): OutputLoss {
  return logProbLoss(
    batch,
    vocab,
    ({ sums }) => {
      const { loss, dSums } = f(sums);
      return { loss, dTokens: Float64Array.from(batch.sequenceOf, (s) => dSums[s]!) };
    },
    temperature,
  );
}

export interface SequenceLogProbs {
  /** Sum over the completion tokens. */
  total: number;
  /** One per completion token. */
  tokens: Float64Array;
}

/**
 * Log-probabilities of each sequence's completion under the base with `lora` (none: the base itself), no dropout,
 * all sequences in one packed forward.
 */
export function sequenceLogProbs(
  model: LlamaTrainModel,
  sequences: readonly ScoredSequence[],
  lora?: LoraAdapter,
  options: { temperature?: number } = {},
): SequenceLogProbs[] {
  const batch = packSequences(sequences);
  let captured: BatchLogProbs | undefined;
  model.forwardBackward(
    batch,
    lora,
    undefined,
    logProbLoss(
      batch,
      model.config.vocabSize,
      (logProbs) => {
        captured = logProbs;
        return { loss: 0, dTokens: new Float64Array(logProbs.tokens.length) };
      },
      options.temperature ?? 1,
    ),
  );
  const { tokens, sums } = captured!;
  const result: SequenceLogProbs[] = [];
  let at = 0;
  for (let s = 0; s < batch.sequences; s++) {
    const length = batch.lengths[s]!;
    result.push({ total: sums[s]!, tokens: tokens.slice(at, at + length) });
    at += length;
  }
  return result;
}
