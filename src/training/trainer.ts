/**
 * The `Trainer` contract: SFT examples (prompt, completion; loss on the completion only) and a base model in,
 * a LoRA adapter out (GGUF LoRA for llama.cpp + PEFT safetensors). `embedded` runs it in-process on CPU.
 */
import type { ProgressListener } from "../progress/progress-event.js";
import type { KernelName } from "./embedded/kernels/kernel.js";
import type { LoraTarget } from "./embedded/lora.js";

export interface SftExample {
  prompt: string;
  completion: string;
}

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
  kernel: "auto",
  activationCheckpointing: "auto",
  activationMemoryBytes: 2 ** 31,
} as const satisfies TrainOptions;

export interface TrainRequest {
  /** Path of the base model (GGUF for the embedded trainer). */
  base: string;
  examples: AsyncIterable<SftExample> | Iterable<SftExample>;
  /** Output directory: adapter.gguf, peft/, checkpoint/, loss.jsonl. */
  output: string;
  options?: TrainOptions;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface LossPoint {
  step: number;
  loss: number;
  learningRate: number;
  tokens: number;
  gradientNorm: number;
}

export interface TrainResult {
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
}

export interface Trainer {
  readonly name: string;
  train(request: TrainRequest): Promise<TrainResult>;
}
