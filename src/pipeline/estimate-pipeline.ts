/**
 * `selfalign run --estimate`: before any work, a few seconds' measurement of the run model's prompt, decode and
 * training speed here, multiplied by each stage's tokens (its `estimate` hook), per stage: what it will evaluate,
 * generate and train on, how long that takes, and what it costs where the model has a price per million tokens.
 */
import { availableParallelism } from "node:os";
import { measureEngineSpeed } from "../backends/llama-cpp/measure-speed.js";
import { measureTrainingSpeed } from "../training/embedded/measure-training-speed.js";
import { measureStages, openTokenCounter } from "./measure-stages.js";
import { type TokenPrice, usageCost } from "./run-budget.js";
import { type PreparedPipeline, preparePipeline, priceOf, type RunPipelineOptions } from "./run-pipeline.js";
import type { StageEstimate } from "./stage-definition.js";
import type { TrainConfig } from "./train-config.js";

export interface MeasuredSpeed {
  promptTokensPerSecond: number;
  /** All sequences together. */
  decodeTokensPerSecond: number;
  decodeSequences: number;
  /** The embedded trainer's, when a stage trains with it. */
  trainTokensPerSecond?: number;
  /** Loading the base into the trainer and its first step, paid once per training stage. */
  trainStartSeconds?: number;
  /** What the measurements took. */
  seconds: number;
  /**
   * CPU time the measurements got, as a share of this machine's cores over their wall time (1: every core all the
   * time). Well under 1 means the machine was busy with other work and the times are for that share.
   */
  cpuShare: number;
}

export interface StageTimeEstimate {
  stage: string;
  estimate: StageEstimate;
  seconds: number;
  cost?: number;
}

export interface PipelineEstimate {
  model: string;
  contextSize: number;
  speed: MeasuredSpeed;
  stages: StageTimeEstimate[];
  /** Stages that run but cannot estimate their work (no `estimate` hook). */
  notEstimated: string[];
  total: {
    promptTokens: number;
    evaluatedPromptTokens: number;
    completionTokens: number;
    trainTokens: number;
    seconds: number;
    cost?: number;
  };
  price?: TokenPrice;
  /** The config's budget, if any. */
  budget?: { tokens?: number; cost?: number };
}

/** The first embedded training stage's options (its threads, kernel and rank decide the measured speed). */
function trainingOptions(prepared: PreparedPipeline): TrainConfig | undefined {
  for (const instance of prepared.instances) {
    const train = instance.options.train as TrainConfig | undefined;
    if (!instance.skip && train && train.trainer !== "hf") return train;
  }
  return undefined;
}

/** Measure speeds (a few seconds to a minute, by the model's size) and estimate every stage; nothing is written. */
export async function estimatePipeline(options: RunPipelineOptions): Promise<PipelineEstimate> {
  const prepared = await preparePipeline(options);
  const { createBackend } = await import("../backends/registry.js");
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const backend = await createBackend(prepared.generator, options.onProgress ? { onProgress: options.onProgress } : {});
  let measured: Awaited<ReturnType<typeof measureStages>>;
  let contextSize: number;
  let engine: Awaited<ReturnType<typeof measureEngineSpeed>>;
  try {
    const counter = await openTokenCounter(prepared.generator, backend);
    contextSize = counter.contextSize;
    measured = await measureStages(prepared, counter);
    engine = await measureEngineSpeed(backend, {
      promptTokens: Math.min(512, Math.floor(contextSize / 2)),
      score: false,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } finally {
    await backend.close();
  }
  const train = trainingOptions(prepared);
  const trains = measured.some(({ estimate }) => estimate.trainTokens > 0);
  let trainSpeed: Awaited<ReturnType<typeof measureTrainingSpeed>> | undefined;
  if (train && trains && prepared.trainBase) {
    trainSpeed = await measureTrainingSpeed({
      base: prepared.trainBase,
      sequenceTokens: Math.min(train.cutoffLen ?? 256, 256),
      ...(train.threads !== undefined ? { threads: train.threads } : {}),
      ...(train.kernel !== undefined ? { kernel: train.kernel } : {}),
      ...(train.rank !== undefined ? { rank: train.rank } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }
  const speed: MeasuredSpeed = {
    promptTokensPerSecond: engine.promptTokensPerSecond,
    decodeTokensPerSecond: engine.decodeTokensPerSecond,
    decodeSequences: engine.decodeSequences,
    ...(trainSpeed
      ? { trainTokensPerSecond: trainSpeed.tokensPerSecond, trainStartSeconds: trainSpeed.firstStepSeconds }
      : {}),
    seconds: (performance.now() - started) / 1000,
    cpuShare: 0,
  };
  const cpu = process.cpuUsage(cpuBefore);
  speed.cpuShare = (cpu.user + cpu.system) / 1e6 / speed.seconds / availableParallelism();
  const price = priceOf(prepared.generator);
  const stages = measured.map(({ instance, estimate }): StageTimeEstimate => {
    const training =
      estimate.trainTokens > 0 && speed.trainTokensPerSecond
        ? estimate.trainTokens / speed.trainTokensPerSecond + (speed.trainStartSeconds ?? 0)
        : 0;
    const seconds =
      estimate.evaluatedPromptTokens / speed.promptTokensPerSecond +
      estimate.completionTokens / speed.decodeTokensPerSecond +
      training;
    return {
      stage: instance.name,
      estimate,
      seconds,
      ...(price ? { cost: usageCost(estimate, price) } : {}),
    };
  });
  const sum = (pick: (stage: StageTimeEstimate) => number) => stages.reduce((total, stage) => total + pick(stage), 0);
  const estimated = new Set(measured.map(({ instance }) => instance.name));
  return {
    model: backend.id,
    contextSize,
    speed,
    stages,
    notEstimated: prepared.instances
      .filter((instance) => !instance.skip && !estimated.has(instance.name))
      .map((instance) => instance.name),
    total: {
      promptTokens: sum((stage) => stage.estimate.promptTokens),
      evaluatedPromptTokens: sum((stage) => stage.estimate.evaluatedPromptTokens),
      completionTokens: sum((stage) => stage.estimate.completionTokens),
      trainTokens: sum((stage) => stage.estimate.trainTokens),
      seconds: sum((stage) => stage.seconds),
      ...(price ? { cost: sum((stage) => stage.cost ?? 0) } : {}),
    },
    ...(price ? { price } : {}),
    ...(prepared.config.budget ? { budget: prepared.config.budget } : {}),
  };
}
