/**
 * A short measurement of the embedded LoRA trainer's speed on a base model: a couple of optimizer steps on
 * synthetic examples, timed after the first (which loads weights into the kernel and starts its workers). What a
 * run estimate divides the tokens of the training stage by. Loading and dequantising the weights is timed apart.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32 } from "../../random/mulberry32.js";
import type { KernelName } from "./kernels/kernel.js";
import type { SftExample } from "../trainer.js";
import { EmbeddedTrainer } from "./embedded-trainer.js";

export interface MeasureTrainingSpeedOptions {
  /** Base model GGUF. */
  base: string;
  /** Tokens per example (about: the text is digits and letters). Default 128. */
  sequenceTokens?: number;
  /** Examples per optimizer step. Default 2. */
  examplesPerStep?: number;
  /** Timed steps after the first. Default 1. */
  steps?: number;
  /** Matmul kernel. Default "auto". */
  kernel?: KernelName | "auto";
  /** Kernel threads. Default: available parallelism. */
  threads?: number;
  /** LoRA rank. Default 16 (the trainer's default). */
  rank?: number;
  signal?: AbortSignal;
}

export interface TrainingSpeed {
  /** Trained tokens (prompt + completion) per second, over the timed steps. */
  tokensPerSecond: number;
  /** Tokens the timed steps trained on. */
  tokens: number;
  /** Seconds from the start to the end of the first step (weights loaded, first step done). */
  firstStepSeconds: number;
  /** Wall-clock seconds the measurement took. */
  seconds: number;
}

/** Train a few steps of LoRA on `base` in a temporary folder and report tokens/s. */
export async function measureTrainingSpeed(options: MeasureTrainingSpeedOptions): Promise<TrainingSpeed> {
  const started = performance.now();
  const sequenceTokens = options.sequenceTokens ?? 128;
  const examplesPerStep = options.examplesPerStep ?? 2;
  const timedSteps = Math.max(1, options.steps ?? 1);
  const random = mulberry32(11);
  const text = (n: number) =>
    Array.from({ length: n }, () => "0123456789abcdefghij"[Math.floor(random() * 20)] as string).join("");
  const examples: SftExample[] = Array.from({ length: examplesPerStep * (timedSteps + 1) }, () => ({
    prompt: text(Math.floor(sequenceTokens / 4)),
    completion: text(sequenceTokens - Math.floor(sequenceTokens / 4)),
  }));
  const dir = await mkdtemp(join(tmpdir(), "selfalign-train-speed-"));
  const stepEnds: number[] = [];
  try {
    const result = await new EmbeddedTrainer().train({
      base: options.base,
      examples,
      output: join(dir, "out"),
      signal: options.signal,
      options: {
        kernel: options.kernel ?? "auto",
        ...(options.threads !== undefined ? { threads: options.threads } : {}),
        ...(options.rank !== undefined ? { rank: options.rank } : {}),
        maxSteps: timedSteps + 1,
        // One micro-batch per step holding all its examples (each is under sequenceTokens + a few tokens).
        batchTokens: examplesPerStep * (sequenceTokens + 8),
        checkpointEvery: 0,
        cutoffLen: sequenceTokens + 8,
        overlong: "truncate",
      },
      onProgress: (event) => {
        if (event.type === "train-step") stepEnds.push(performance.now());
      },
    });
    const tokens = result.lossCurve.slice(1).reduce((sum, point) => sum + point.tokens, 0);
    const first = stepEnds[0] ?? performance.now();
    const last = stepEnds.at(-1) ?? first;
    return {
      tokensPerSecond: tokens / Math.max(1e-9, (last - first) / 1000),
      tokens,
      firstStepSeconds: (first - started) / 1000,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
