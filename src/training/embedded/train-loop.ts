/**
 * The parts of a training run shared by every kind: restore (resume a checkpoint, or set a stale one aside) and the
 * step loop (micro-batches of the seeded epoch order, gradient accumulation, clipping, AdamW with the schedule,
 * held-out evaluation, checkpoints). The objective supplies only the loss of a micro-batch.
 */
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import { AbortedError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { writeJsonLines } from "../../run-store/json-file.js";
import type { EvalPoint, LossPoint } from "../trainer.js";
import { adamWStep, clipGradientNorm, defaultAdamW, learningRateAt } from "./adamw.js";
import {
  type CheckpointArrays,
  type CheckpointState,
  fingerprintDifferences,
  isCurrentState,
  loadCheckpointArrays,
  readCheckpointState,
  restoreSetAside,
  saveCheckpoint,
  setAsideCheckpoint,
} from "./checkpoint.js";
import type { ResolvedTrainOptions } from "./embedded-trainer.js";
import { hashSeed, type LlamaTrainModel, type LossOptions } from "./llama-train-model.js";
import type { LoraAdapter } from "./lora.js";
import { addMetrics, type BatchMetrics, noMetrics, type Objective, orderedBatches } from "./objectives/objective.js";
import type { Vec } from "./ops.js";
import { epochBatches } from "./sft-dataset.js";

/** Everything `prepare` settled before the weights are loaded. */
export interface PreparedRun {
  options: ResolvedTrainOptions;
  objective: Objective;
  lora: LoraAdapter;
  /** Gradients of the LoRA, same layout. */
  loraGrads: LoraAdapter;
  /** All trainable arrays (LoRA, then the objective's own), their gradients and AdamW moments. */
  arrays: CheckpointArrays;
  grads: Vec[];
  fingerprint: Record<string, unknown>;
  output: string;
  checkpointDir: string;
}

export interface RunProgress {
  step: number;
  lossCurve: LossPoint[];
  evalCurve: EvalPoint[];
}

/**
 * The state to continue from: a checkpoint of this run's settings (`resume`), or a fresh start. A checkpoint made
 * with other settings or data is set aside (or, with staleCheckpoint "error", refused); one set aside earlier for
 * exactly these settings is put back.
 */
export async function restore(run: PreparedRun, emit: ProgressListener): Promise<RunProgress> {
  const fresh: RunProgress = { step: 0, lossCurve: [], evalCurve: [] };
  if (!run.options.resume) return fresh;
  const dir = run.checkpointDir;
  let state = await readCheckpointState(dir);
  if (state !== undefined) {
    const saved = isCurrentState(state) ? state.fingerprint : { version: (state as { version?: unknown }).version };
    const differences = isCurrentState(state) ? fingerprintDifferences(saved, run.fingerprint) : ["checkpoint version"];
    if (differences.length > 0) {
      if (run.options.staleCheckpoint === "error") {
        throw new ConfigError(
          `cannot resume: the checkpoint was made with different settings or data (${differences.join(", ")}); remove ${dir}, restore them, or set staleCheckpoint to "restart"`,
          { path: dir },
        );
      }
      const aside = await setAsideCheckpoint(dir, saved);
      emit({
        type: "message",
        level: "warn",
        text: `the checkpoint in ${dir} was made with other settings or data (${differences.join(", ")}); it is kept in ${aside} and training starts afresh`,
      });
      state = undefined;
    }
  }
  if (state === undefined) {
    const source = await restoreSetAside(dir, run.fingerprint);
    if (source === undefined) return fresh;
    emit({ type: "message", level: "info", text: `resuming the checkpoint set aside in ${source} (same settings)` });
    state = await readCheckpointState(dir);
  }
  const current = state as CheckpointState;
  await loadCheckpointArrays(dir, run.arrays);
  return { step: current.step, lossCurve: current.lossCurve, evalCurve: current.evalCurve ?? [] };
}

export interface StepLoopOptions {
  emit: ProgressListener;
  signal?: AbortSignal;
}

/** Train from `progress` to the last step, writing loss.jsonl (and eval.jsonl) and checkpoints as it goes. */
export async function stepLoop(
  run: PreparedRun,
  model: LlamaTrainModel,
  progress: RunProgress,
  { emit, signal }: StepLoopOptions,
): Promise<RunProgress> {
  const { options: o, objective, lora, loraGrads, arrays, grads } = run;
  const trainRows = objective.trainRows;
  // The micro-batches of one epoch at a time (every epoch has as many; each is reshuffled by its seed).
  let epochOrder = { epoch: 0, batches: epochBatches(trainRows, o.batchTokens, o.seed, 0) };
  const batchesOf = (epoch: number): number[][] => {
    if (epochOrder.epoch !== epoch)
      epochOrder = { epoch, batches: epochBatches(trainRows, o.batchTokens, o.seed, epoch) };
    return epochOrder.batches;
  };
  const microPerEpoch = epochOrder.batches.length;
  const totalSteps = o.maxSteps ?? Math.ceil((microPerEpoch * o.epochs) / o.gradientAccumulation);
  const endMicro = o.maxSteps === undefined ? microPerEpoch * o.epochs : totalSteps * o.gradientAccumulation;
  let { step } = progress;
  const { lossCurve, evalCurve } = progress;
  const lossOptions = (dropoutSeed: number, dropout: number): LossOptions => ({
    dropout,
    dropoutSeed,
    checkpoint: o.activationCheckpointing,
    activationMemoryBytes: o.activationMemoryBytes,
  });

  // loss.jsonl and eval.jsonl always mirror the curves so far (rewritten on resume, then appended to).
  const lossFile = join(run.output, "loss.jsonl");
  const evalFile = join(run.output, "eval.jsonl");
  await writeJsonLines(lossFile, lossCurve);
  const heldOut = objective.evalRows.length > 0;
  if (heldOut) await writeJsonLines(evalFile, evalCurve);

  const save = async () => {
    const nextMicro = Math.min(step * o.gradientAccumulation, endMicro);
    const epoch = Math.floor(nextMicro / microPerEpoch);
    const state: CheckpointState = {
      version: 2,
      kind: objective.kind,
      step,
      totalSteps,
      fingerprint: run.fingerprint,
      lossCurve,
      evalCurve,
      rng: { seed: o.seed, nextMicroBatch: nextMicro },
      dataOrder: { epoch, batches: batchesOf(epoch) },
    };
    await saveCheckpoint(run.checkpointDir, state, arrays);
  };

  const evaluate = async () => {
    const items = objective.evalRows.map((_, i) => i);
    const normaliser = objective.normaliser("eval", items);
    const sum = noMetrics();
    for (const batch of orderedBatches(objective.evalRows, o.batchTokens)) {
      addMetrics(sum, objective.run({ model, lora, options: lossOptions(0, 0) }, "eval", batch, normaliser));
    }
    const point: EvalPoint = { step, loss: sum.loss, examples: items.length, ...pairMetrics(sum) };
    evalCurve.push(point);
    await appendFile(evalFile, `${JSON.stringify(point)}\n`);
    emit({ type: "train-eval", totalSteps, ...point });
  };
  const evalDue = () =>
    heldOut &&
    evalCurve.at(-1)?.step !== step &&
    (step === 0 || step === totalSteps || (o.evalEvery > 0 && step % o.evalEvery === 0));

  if (evalDue()) await evaluate();
  while (step < totalSteps) {
    // Parameters only change at the end of a step, so an abort (checked before every micro-batch) saves the
    // state after the last completed step; the partial step is redone on resume.
    const stopIfAborted = async () => {
      if (!signal?.aborted) return;
      await save();
      throw new AbortedError(
        `training interrupted after step ${step} of ${totalSteps}; checkpoint saved in ${run.checkpointDir}. Run again with resume to continue`,
      );
    };
    await stopIfAborted();
    const started = performance.now();
    const first = step * o.gradientAccumulation;
    const last = Math.min(first + o.gradientAccumulation, endMicro);
    const micro: Array<{ g: number; items: number[] }> = [];
    for (let g = first; g < last; g++)
      micro.push({ g, items: batchesOf(Math.floor(g / microPerEpoch))[g % microPerEpoch]! });
    const normaliser = micro.reduce((sum, b) => sum + objective.normaliser("train", b.items), 0);
    for (const g of grads) g.fill(0);
    const sum = noMetrics();
    for (const b of micro) {
      await stopIfAborted();
      const context = { model, lora, grads: loraGrads, options: lossOptions(hashSeed(o.seed, b.g), o.dropout) };
      addMetrics(sum, objective.run(context, "train", b.items, normaliser));
    }
    const gradientNorm = clipGradientNorm(grads, o.maxGradNorm);
    const learningRate = learningRateAt(step, totalSteps, o.learningRate, o.warmupSteps, o.schedule);
    adamWStep(arrays.params, grads, arrays.m, arrays.v, step + 1, learningRate, {
      ...defaultAdamW,
      weightDecay: o.weightDecay,
    });
    step++;
    const point: LossPoint = {
      step,
      loss: sum.loss,
      learningRate,
      tokens: sum.tokens,
      gradientNorm,
      ...pairMetrics(sum),
    };
    lossCurve.push(point);
    await appendFile(lossFile, `${JSON.stringify(point)}\n`);
    const seconds = (performance.now() - started) / 1000;
    emit({
      type: "train-step",
      step,
      totalSteps,
      loss: point.loss,
      learningRate,
      tokensPerSecond: sum.tokens / Math.max(seconds, 1e-9),
      ...pairMetrics(sum),
    });
    if (evalDue()) await evaluate();
    if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0 && step < totalSteps) await save();
  }
  if (evalDue()) await evaluate();
  await save();
  return { step, lossCurve, evalCurve };
}

/** Accuracy and mean margin of the pairs kinds (nothing for SFT). */
function pairMetrics(sum: BatchMetrics): { accuracy?: number; margin?: number } {
  return sum.pairs > 0 ? { accuracy: sum.correct / sum.pairs, margin: sum.margin / sum.pairs } : {};
}
