/**
 * The `Trainer` contract: a base model and a request of one kind in, a LoRA adapter out (GGUF LoRA for llama.cpp +
 * PEFT safetensors). The kinds: `sft` (prompt, completion; loss on the completion only), `preference` (prompt,
 * chosen, rejected; DPO against a frozen reference) and `reward` (the same pairs; a reward model: LoRA + a scalar
 * head on the last token's final normed hidden state). `embedded` runs every kind in-process on CPU.
 */
import type { ProgressListener } from "../progress/progress-event.js";
import type { KernelName } from "./embedded/kernels/kernel.js";
import type { LoraTarget } from "./embedded/lora.js";

export interface SftExample {
  prompt: string;
  completion: string;
}

/** A preference pair: `chosen` is the better response to `prompt` (the field names TRL and OpenRLHF read). */
export interface PreferenceExample {
  prompt: string;
  chosen: string;
  rejected: string;
}

export const trainKinds = ["sft", "preference", "reward"] as const;
export type TrainKind = (typeof trainKinds)[number];

/** `sigmoid`: DPO (with `labelSmoothing`, conservative DPO); `ipo`: IPO on per-token mean log-probabilities. */
export const preferenceLosses = ["sigmoid", "ipo"] as const;
export type PreferenceLoss = (typeof preferenceLosses)[number];

/** What a stale checkpoint (made with other settings or data) does to a resume: set aside, or an error. */
export const staleCheckpointPolicies = ["restart", "error"] as const;
export type StaleCheckpointPolicy = (typeof staleCheckpointPolicies)[number];

export interface PreferenceOptions {
  /** DPO's β: how far the policy may move from the reference. Default 0.1. */
  beta?: number;
  /** Default "sigmoid". */
  loss?: PreferenceLoss;
  /** Conservative DPO: the assumed probability that a pair's label is flipped, in [0, 0.5). Default 0. */
  labelSmoothing?: number;
  /**
   * The frozen reference policy: "init" (the policy training starts from: `initAdapter`, or the base without one),
   * "base", or another adapter (a GGUF LoRA or a PEFT folder). Default "init".
   */
  reference?: "init" | "base" | { adapter: string };
}

export const preferenceOptionDefaults = {
  beta: 0.1,
  loss: "sigmoid",
  labelSmoothing: 0,
  reference: "init",
} as const satisfies PreferenceOptions;

export const learningRateSchedules = ["cosine", "linear", "constant"] as const;
export type LearningRateSchedule = (typeof learningRateSchedules)[number];

export const overlongPolicies = ["error", "truncate", "drop"] as const;
export type OverlongPolicy = (typeof overlongPolicies)[number];

export interface TrainOptions {
  /** LoRA rank. Default 16. */
  rank?: number;
  /** LoRA alpha (scale = alpha / rank). Default 16. */
  alpha?: number;
  /** Dropout on the LoRA input path. Default 0.05. */
  dropout?: number;
  /** Adapted projections. Default q, k, v, o. */
  targets?: LoraTarget[];
  /** Peak learning rate. Default 4e-4. */
  learningRate?: number;
  /** Default 1. */
  epochs?: number;
  /** Stop after this many optimizer steps (default: epochs × batches / gradientAccumulation). */
  maxSteps?: number;
  /** Token budget of one micro-batch (length-bucketed sequences packed up to it). Default 2048. */
  batchTokens?: number;
  /** Micro-batches per optimizer step. Default 1. */
  gradientAccumulation?: number;
  /** Linear warm-up steps. Default 0. */
  warmupSteps?: number;
  /** Decay after warm-up. Default "cosine". */
  schedule?: LearningRateSchedule;
  /** AdamW decoupled weight decay. Default 0. */
  weightDecay?: number;
  /** Clip the global gradient norm to this (0 = off). Default 1. */
  maxGradNorm?: number;
  /** Longest example in tokens (default: the model's context length). */
  cutoffLen?: number;
  /** What to do with an example longer than cutoffLen. Default "error". */
  overlong?: OverlongPolicy;
  /** Seed of LoRA init, data order and dropout. Default 0. */
  seed?: number;
  /** Save a checkpoint every N optimizer steps (0 = only at the end or on abort). Default 50. */
  checkpointEvery?: number;
  /** Continue from `<output>/checkpoint` when it exists. Default false. */
  resume?: boolean;
  /**
   * A resume finding a checkpoint made with other settings or data: "restart" sets it aside (in
   * `<output>/stale-checkpoints/`, restored when those settings come back) and trains afresh with a warning;
   * "error" refuses, naming what differs. Default "restart".
   */
  staleCheckpoint?: StaleCheckpointPolicy;
  /** Share of the examples held out for evaluation (seeded split), in [0, 0.5]. Default 0 (none). */
  evalFraction?: number;
  /** Evaluate on the held-out examples every N steps (and at the start and end); 0 = start and end only. Default 0. */
  evalEvery?: number;
  /** Matmul kernel. Default "auto". */
  kernel?: KernelName | "auto";
  /** Kernel threads. Default: available parallelism. */
  threads?: number;
  /**
   * Per-layer activation checkpointing: keep only each layer's input and recompute the layer in the backward
   * (one extra forward, ~1.5x the matmul work; activation memory of one layer instead of all). "auto" turns it on
   * when a micro-batch's activations would exceed `activationMemoryBytes`. Default "auto".
   */
  activationCheckpointing?: boolean | "auto";
  /** Activation budget for "auto" checkpointing. Default 2 GiB. */
  activationMemoryBytes?: number;
  /** Written to adapter_config.json. Default: the base file name. */
  baseModelName?: string;
}

/** Defaults of TrainOptions (documented on each field above), shared by the embedded and the hf trainer. */
export const trainOptionDefaults = {
  rank: 16,
  alpha: 16,
  dropout: 0.05,
  targets: ["q", "k", "v", "o"],
  learningRate: 4e-4,
  epochs: 1,
  batchTokens: 2048,
  gradientAccumulation: 1,
  warmupSteps: 0,
  schedule: "cosine",
  weightDecay: 0,
  maxGradNorm: 1,
  overlong: "error",
  seed: 0,
  checkpointEvery: 50,
  resume: false,
  staleCheckpoint: "restart",
  evalFraction: 0,
  evalEvery: 0,
  kernel: "auto",
  activationCheckpointing: "auto",
  activationMemoryBytes: 2 ** 31,
} as const satisfies TrainOptions;

export type Examples<T> = AsyncIterable<T> | Iterable<T>;

interface TrainRequestBase {
  /** Path of the base model (GGUF for the embedded trainer). */
  base: string;
  /** Output directory: adapter.gguf, peft/, checkpoint/, loss.jsonl (and eval.jsonl with held-out examples). */
  output: string;
  options?: TrainOptions;
  /**
   * Start from this adapter instead of a fresh LoRA: a GGUF LoRA file, a PEFT folder, or a trainer output folder
   * (its adapter.gguf; for `reward`, its head too). Rank, alpha and targets come from the adapter.
   */
  initAdapter?: string;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface SftTrainRequest extends TrainRequestBase {
  /** Default when absent. */
  kind?: "sft";
  examples: Examples<SftExample>;
  /** Held-out examples (instead of, or with, `evalFraction`). */
  evalExamples?: Examples<SftExample>;
}

export interface PreferenceTrainRequest extends TrainRequestBase {
  kind: "preference";
  examples: Examples<PreferenceExample>;
  evalExamples?: Examples<PreferenceExample>;
  preference?: PreferenceOptions;
}

export interface RewardTrainRequest extends TrainRequestBase {
  kind: "reward";
  examples: Examples<PreferenceExample>;
  evalExamples?: Examples<PreferenceExample>;
}

export type TrainRequest = SftTrainRequest | PreferenceTrainRequest | RewardTrainRequest;

export interface LossPoint {
  step: number;
  loss: number;
  learningRate: number;
  tokens: number;
  gradientNorm: number;
  /** Pairs kinds: share of the step's pairs whose chosen response got the higher reward. */
  accuracy?: number;
  /** Pairs kinds: mean reward of chosen minus rejected (DPO: the implicit reward β·log(π/π_ref)). */
  margin?: number;
}

/** Metrics on the held-out examples after `step` optimizer steps (one line of eval.jsonl). */
export interface EvalPoint {
  step: number;
  loss: number;
  examples: number;
  accuracy?: number;
  margin?: number;
}

/** What became of the training items: used (some of them cut at cutoffLen), or left out. */
export interface TrainDataCounts {
  used: number;
  truncated: number;
  dropped: number;
}

export interface TrainResult {
  kind: TrainKind;
  adapterPath: string;
  peftDir: string;
  steps: number;
  finalLoss: number;
  lossCurve: LossPoint[];
  /**
   * True on a machine other than the main one of a multi-machine run: it took part in training, but the adapter,
   * the progress and the loss are on the main machine (rank 0), and `adapterPath` names where it is written there.
   */
  worker?: boolean;
  evalCurve: EvalPoint[];
  /** `reward`: the head file (score.weight [1, hidden]) next to the adapter. */
  rewardHeadPath?: string;
  /** Embedded trainer: what became of the training items (some cut at cutoffLen, some left out). */
  data?: TrainDataCounts;
}

export interface Trainer {
  readonly name: string;
  train(request: TrainRequest): Promise<TrainResult>;
}
