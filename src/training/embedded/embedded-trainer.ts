/**
 * The embedded LoRA trainer: SFT on a LLaMA-family GGUF in this process (method A.5, principle engraving), with
 * AdamW, warm-up + decay, gradient accumulation and clipping, packed length-bucketed micro-batches, checkpoints with
 * exact resume, and export as a GGUF LoRA (llama.cpp) and a PEFT adapter.
 */
import { createHash } from "node:crypto";
import { appendFile, mkdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { getLlama } from "node-llama-cpp";
import { AbortedError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { writeGgufLora } from "../export/gguf-lora.js";
import { writePeftAdapter } from "../export/peft-adapter.js";
import {
  type LossPoint,
  type Trainer,
  type TrainOptions,
  type TrainRequest,
  type TrainResult,
  trainOptionDefaults,
} from "../trainer.js";
import { adamWStep, clipGradientNorm, defaultAdamW, learningRateAt } from "./adamw.js";
import {
  type CheckpointState,
  checkpointExists,
  fingerprintDifferences,
  loadCheckpoint,
  saveCheckpoint,
} from "./checkpoint.js";
import { writeJsonLines } from "../../run-store/json-file.js";
import { createKernel } from "./kernels/index.js";
import { hashSeed, LlamaTrainModel } from "./llama-train-model.js";
import { loadLlamaModel, readLlamaModelConfig } from "./llama-weights.js";
import { createLora, loraArrays, parseLoraTargets, zerosLike } from "./lora.js";
import { kernelPrecision } from "./precision.js";
import {
  completionTokens,
  epochBatches,
  packBatch,
  type TokenizedExample,
  type TrainTokenizer,
  tokenizeExamples,
} from "./sft-dataset.js";

export type ResolvedTrainOptions = Required<
  Omit<TrainOptions, "maxSteps" | "cutoffLen" | "threads" | "baseModelName">
> &
  Pick<TrainOptions, "maxSteps" | "cutoffLen" | "threads" | "baseModelName">;

export function resolveTrainOptions(options: TrainOptions = {}): ResolvedTrainOptions {
  const o: ResolvedTrainOptions = {
    ...trainOptionDefaults,
    targets: [...trainOptionDefaults.targets],
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
  };
  const positiveInt = (name: keyof ResolvedTrainOptions, min = 1) => {
    const v = o[name] as number | undefined;
    if (v !== undefined && (!Number.isInteger(v) || v < min)) {
      throw new ConfigError(`${name} must be an integer >= ${min}, got ${v}`, { field: name });
    }
  };
  for (const name of [
    "rank",
    "epochs",
    "batchTokens",
    "gradientAccumulation",
    "maxSteps",
    "cutoffLen",
    "threads",
  ] as const) {
    positiveInt(name);
  }
  o.targets = parseLoraTargets(o.targets);
  positiveInt("warmupSteps", 0);
  positiveInt("checkpointEvery", 0);
  if (!(o.learningRate > 0))
    throw new ConfigError(`learningRate must be > 0, got ${o.learningRate}`, { field: "learningRate" });
  if (!(o.dropout >= 0 && o.dropout < 1))
    throw new ConfigError(`dropout must be in [0, 1), got ${o.dropout}`, { field: "dropout" });
  if (!(o.alpha > 0)) throw new ConfigError(`alpha must be > 0, got ${o.alpha}`, { field: "alpha" });
  return o;
}

/** node-llama-cpp's tokenizer for the GGUF (vocabulary only, no weights loaded). */
export async function openTokenizer(modelPath: string): Promise<TrainTokenizer & { dispose(): Promise<void> }> {
  const llama = await getLlama({ gpu: false, build: "never" });
  const model = await llama.loadModel({ modelPath, vocabOnly: true }).catch((error: unknown) => {
    throw new ConfigError(`llama.cpp cannot load the tokenizer of the model: ${(error as Error).message}`, {
      path: modelPath,
      cause: error,
    });
  });
  const bos = model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? Number(model.tokens.bos) : undefined;
  return {
    bos,
    tokenize: (text) => model.tokenize(text).map(Number),
    dispose: () => model.dispose(),
  };
}

export interface EmbeddedTrainerOptions {
  /** Tokenizer override (default: the GGUF's own vocabulary through node-llama-cpp). */
  tokenizer?: TrainTokenizer;
}

export class EmbeddedTrainer implements Trainer {
  readonly name = "embedded";
  constructor(private readonly settings: EmbeddedTrainerOptions = {}) {}

  async train(request: TrainRequest): Promise<TrainResult> {
    const o = resolveTrainOptions(request.options);
    const emit: ProgressListener = request.onProgress ?? (() => {});
    // Header first: architecture, rank and data errors come before the (slow) weight loading.
    const config = await readLlamaModelConfig(request.base, { checkTensorTypes: true });
    // Fail fast on the rank before any data is read.
    const lora = createLora(config, {
      rank: o.rank,
      alpha: o.alpha,
      targets: o.targets,
      seed: o.seed,
      alloc: (n) => new Float32Array(n),
    });
    const maxLength = o.cutoffLen ?? config.contextLength;
    if (maxLength > config.contextLength) {
      throw new ConfigError(
        `cutoffLen ${maxLength} is longer than the model's context of ${config.contextLength} tokens`,
        { field: "cutoffLen" },
      );
    }
    const ownTokenizer = this.settings.tokenizer ? undefined : await openTokenizer(request.base);
    let tokenized: Awaited<ReturnType<typeof tokenizeExamples>>;
    try {
      tokenized = await tokenizeExamples(
        request.examples,
        (this.settings.tokenizer ?? ownTokenizer)!,
        maxLength,
        o.overlong,
      );
    } finally {
      await ownTokenizer?.dispose();
    }
    for (const text of tokenized.warnings.slice(0, 20)) emit({ type: "message", level: "warn", text });
    const examples = tokenized.examples;

    // The micro-batches of one epoch at a time (every epoch has as many; each is reshuffled by its seed).
    let epochOrder = { epoch: 0, batches: epochBatches(examples, o.batchTokens, o.seed, 0) };
    const batchesOf = (epoch: number): number[][] => {
      if (epochOrder.epoch !== epoch)
        epochOrder = { epoch, batches: epochBatches(examples, o.batchTokens, o.seed, epoch) };
      return epochOrder.batches;
    };
    const microPerEpoch = epochOrder.batches.length;
    const totalSteps = o.maxSteps ?? Math.ceil((microPerEpoch * o.epochs) / o.gradientAccumulation);
    const endMicro = o.maxSteps === undefined ? microPerEpoch * o.epochs : totalSteps * o.gradientAccumulation;

    const params = loraArrays(lora);
    const grads = zerosLike(lora, (n) => new Float32Array(n));
    const gradArrays = loraArrays(grads);
    const m = params.map((p) => new Float32Array(p.length));
    const v = params.map((p) => new Float32Array(p.length));

    const checkpointDir = join(request.output, "checkpoint");
    const fingerprint = {
      base: basename(request.base),
      architecture: config.architecture,
      examples: examples.length,
      data: dataHash(examples),
      ...Object.fromEntries(
        Object.entries(o).filter(
          ([k]) =>
            ![
              "resume",
              "checkpointEvery",
              "kernel",
              "threads",
              "activationCheckpointing",
              "activationMemoryBytes",
              "baseModelName",
            ].includes(k),
        ),
      ),
    };
    let step = 0;
    let lossCurve: LossPoint[] = [];
    await mkdir(request.output, { recursive: true });
    if (o.resume && (await checkpointExists(checkpointDir))) {
      const state = await loadCheckpoint(checkpointDir, { lora: params, m, v });
      const differences = fingerprintDifferences(state.fingerprint, fingerprint);
      if (differences.length > 0) {
        throw new ConfigError(
          `cannot resume: the checkpoint was made with different settings or data (${differences.join(", ")}); remove ${checkpointDir} or restore them`,
          { path: checkpointDir },
        );
      }
      step = state.step;
      lossCurve = state.lossCurve;
    }

    // loss.jsonl always mirrors the curve so far (rewritten on resume, then one line appended per step).
    const lossFile = join(request.output, "loss.jsonl");
    await writeLossFile(request.output, lossCurve);
    const kernel = createKernel(o.kernel, { threads: o.threads });
    try {
      // Frozen weights live in the kernel's own memory, so no matmul copies them in (wasm).
      const base = await loadLlamaModel(request.base, (n) => kernel.alloc(n));
      const model = new LlamaTrainModel(base, kernelPrecision(kernel));
      const save = async () => {
        const nextMicro = Math.min(step * o.gradientAccumulation, endMicro);
        const epoch = Math.floor(nextMicro / microPerEpoch);
        const state: CheckpointState = {
          version: 1,
          step,
          totalSteps,
          fingerprint,
          lossCurve,
          rng: { seed: o.seed, nextMicroBatch: nextMicro },
          dataOrder: { epoch, batches: batchesOf(epoch) },
        };
        await saveCheckpoint(checkpointDir, state, { lora: params, m, v });
      };

      while (step < totalSteps) {
        // Parameters only change at the end of a step, so an abort (checked before every micro-batch) saves the
        // state after the last completed step; the partial step is redone on resume.
        const stopIfAborted = async () => {
          if (!request.signal?.aborted) return;
          await save();
          throw new AbortedError(
            `training interrupted after step ${step} of ${totalSteps}; checkpoint saved in ${checkpointDir}. Run again with resume to continue`,
          );
        };
        await stopIfAborted();
        const started = performance.now();
        const first = step * o.gradientAccumulation;
        const last = Math.min(first + o.gradientAccumulation, endMicro);
        const micro: Array<{ g: number; examples: number[] }> = [];
        for (let g = first; g < last; g++) {
          const batches = batchesOf(Math.floor(g / microPerEpoch));
          micro.push({ g, examples: batches[g % microPerEpoch]! });
        }
        const normaliser = micro.reduce((s, b) => s + completionTokens(examples, b.examples), 0);
        for (const g of gradArrays) g.fill(0);
        let loss = 0;
        let tokens = 0;
        for (const b of micro) {
          await stopIfAborted();
          const batch = packBatch(examples, b.examples, normaliser);
          tokens += batch.tokens.length;
          loss += model.lossAndGradient(batch, lora, grads, {
            dropout: o.dropout,
            dropoutSeed: hashSeed(o.seed, b.g),
            checkpoint:
              o.activationCheckpointing === "auto"
                ? model.activationBytes(batch) > o.activationMemoryBytes
                : o.activationCheckpointing,
          });
        }
        const gradientNorm = clipGradientNorm(gradArrays, o.maxGradNorm);
        const learningRate = learningRateAt(step, totalSteps, o.learningRate, o.warmupSteps, o.schedule);
        adamWStep(params, gradArrays, m, v, step + 1, learningRate, { ...defaultAdamW, weightDecay: o.weightDecay });
        step++;
        const point = { step, loss, learningRate, tokens, gradientNorm };
        lossCurve.push(point);
        await appendFile(lossFile, `${JSON.stringify(point)}\n`);
        const seconds = (performance.now() - started) / 1000;
        emit({
          type: "train-step",
          step,
          totalSteps,
          loss,
          learningRate,
          tokensPerSecond: tokens / Math.max(seconds, 1e-9),
        });
        if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0 && step < totalSteps) await save();
      }
      await save();
    } finally {
      kernel.dispose();
    }

    const adapterPath = join(request.output, "adapter.gguf");
    const peftDir = join(request.output, "peft");
    await writeGgufLora(adapterPath, lora, config.architecture, `${basename(request.base)}-lora`);
    await writePeftAdapter(peftDir, lora, config, {
      baseModelName: o.baseModelName ?? basename(request.base),
      dropout: o.dropout,
    });
    return { adapterPath, peftDir, steps: step, finalLoss: lossCurve.at(-1)?.loss ?? Number.NaN, lossCurve };
  }
}

/** SHA-256 of the tokenised examples and their prompt lengths: resume refuses different data. */
function dataHash(examples: TokenizedExample[]): string {
  const hash = createHash("sha256");
  for (const e of examples) {
    hash.update(Int32Array.of(e.index, e.promptLength, e.tokens.length));
    hash.update(e.tokens);
  }
  return hash.digest("hex").slice(0, 16);
}

async function writeLossFile(output: string, curve: LossPoint[]): Promise<void> {
  await writeJsonLines(join(output, "loss.jsonl"), curve);
}

/** Tokenised examples of a run, for tools that want to inspect what the trainer will see. */
export type { TokenizedExample };
