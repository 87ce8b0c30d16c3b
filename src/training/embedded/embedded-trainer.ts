/**
 * The embedded LoRA trainer: every training kind on a LLaMA-family GGUF in this process — SFT (method A.5, principle
 * engraving), preference optimisation (DPO / IPO against a frozen reference) and reward models (B.4) — with AdamW,
 * warm-up + decay, gradient accumulation and clipping, packed length-bucketed micro-batches, held-out evaluation,
 * checkpoints with exact resume, and export as a GGUF LoRA (llama.cpp) and a PEFT adapter.
 *
 * `train` is prepare (options, data, adapter, fingerprint) -> restore (checkpoint) -> step loop -> export; only the
 * objective (objectives/) differs between kinds.
 */
import { createHash } from "node:crypto";
import { mkdir, open, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { getLlama } from "node-llama-cpp";
import { ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { writeGgufLora } from "../export/gguf-lora.js";
import { writePeftAdapter } from "../export/peft-adapter.js";
import {
  staleCheckpointPolicies,
  type Trainer,
  type TrainOptions,
  type TrainRequest,
  type TrainResult,
  trainOptionDefaults,
} from "../trainer.js";
import { type LoadedAdapter, loadAdapter } from "./adapter-source.js";
import { createKernel } from "./kernels/index.js";
import { LlamaTrainModel } from "./llama-train-model.js";
import { loadLlamaModel, readLlamaModelConfig } from "./llama-weights.js";
import { createLora, type LoraAdapter, loraArrays, parseLoraTargets, zerosLike } from "./lora.js";
import type { LlamaConfig } from "./model-config.js";
import type { ObjectiveBuildContext } from "./objectives/build-context.js";
import type { Objective } from "./objectives/objective.js";
import { buildPreferenceObjective } from "./objectives/preference-objective.js";
import { buildRewardObjective } from "./objectives/reward-objective.js";
import { buildSftObjective } from "./objectives/sft-objective.js";
import { kernelPrecision } from "./precision.js";
import type { TokenizedExample, TrainTokenizer } from "./sft-dataset.js";
import { type PreparedRun, restore, stepLoop } from "./train-loop.js";

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
  positiveInt("evalEvery", 0);
  if (!(o.learningRate > 0))
    throw new ConfigError(`learningRate must be > 0, got ${o.learningRate}`, { field: "learningRate" });
  if (!(o.dropout >= 0 && o.dropout < 1))
    throw new ConfigError(`dropout must be in [0, 1), got ${o.dropout}`, { field: "dropout" });
  if (!(o.alpha > 0)) throw new ConfigError(`alpha must be > 0, got ${o.alpha}`, { field: "alpha" });
  if (!(o.evalFraction >= 0 && o.evalFraction <= 0.5))
    throw new ConfigError(`evalFraction must be in [0, 0.5], got ${o.evalFraction}`, { field: "evalFraction" });
  if (!staleCheckpointPolicies.includes(o.staleCheckpoint)) {
    throw new ConfigError(
      `staleCheckpoint must be one of ${staleCheckpointPolicies.join(", ")}, got ${String(o.staleCheckpoint)}`,
      { field: "staleCheckpoint" },
    );
  }
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

/** Options that change neither the numbers nor the data of a run: a checkpoint made with other values resumes. */
const unfingerprinted = [
  "resume",
  "staleCheckpoint",
  "checkpointEvery",
  "kernel",
  "threads",
  "activationCheckpointing",
  "activationMemoryBytes",
  "baseModelName",
] as const satisfies ReadonlyArray<keyof TrainOptions>;

export class EmbeddedTrainer implements Trainer {
  readonly name = "embedded";
  constructor(private readonly settings: EmbeddedTrainerOptions = {}) {}

  async train(request: TrainRequest): Promise<TrainResult> {
    const emit: ProgressListener = request.onProgress ?? (() => {});
    const run = await this.prepare(request);
    for (const text of run.objective.warnings.slice(0, 20)) emit({ type: "message", level: "warn", text });
    await mkdir(request.output, { recursive: true });
    const progress = await restore(run, emit);
    const kernel = createKernel(run.options.kernel, { threads: run.options.threads });
    let steps: number;
    let lossCurve: TrainResult["lossCurve"];
    let evalCurve: TrainResult["evalCurve"];
    try {
      // Frozen weights live in the kernel's own memory, so no matmul copies them in (wasm).
      const base = await loadLlamaModel(request.base, (n) => kernel.alloc(n));
      const model = new LlamaTrainModel(base, kernelPrecision(kernel));
      run.objective.attach?.(model);
      ({
        step: steps,
        lossCurve,
        evalCurve,
      } = await stepLoop(run, model, progress, {
        emit,
        ...(request.signal ? { signal: request.signal } : {}),
      }));
    } finally {
      kernel.dispose();
    }
    const exported = await exportAdapter(run, request.base, run.config);
    return {
      kind: run.objective.kind,
      ...exported,
      steps,
      finalLoss: lossCurve.at(-1)?.loss ?? Number.NaN,
      lossCurve,
      evalCurve,
      data: run.objective.dataCounts,
    };
  }

  /** Options, data, the adapter to train (fresh or `initAdapter`) and the fingerprint, before any weight is read. */
  private async prepare(request: TrainRequest): Promise<PreparedRun & { config: LlamaConfig }> {
    const requested = request.options ?? {};
    // Header first: architecture, rank and data errors come before the (slow) weight loading.
    const config = await readLlamaModelConfig(request.base, { checkTensorTypes: true });
    const init = request.initAdapter === undefined ? undefined : await loadAdapter(request.initAdapter, config);
    const o = resolveTrainOptions(init ? adoptAdapterShape(requested, init) : requested);
    // Fail fast on the rank before any data is read.
    const lora: LoraAdapter = init
      ? init.adapter
      : createLora(config, {
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
    let objective: Objective;
    try {
      const build: ObjectiveBuildContext = {
        base: request.base,
        tokenizer: (this.settings.tokenizer ?? ownTokenizer)!,
        maxLength,
        options: o,
        config,
        ...(init ? { init } : {}),
      };
      if (request.kind === "preference") {
        objective = await buildPreferenceObjective(request.examples, request.evalExamples, request.preference, build);
      } else if (request.kind === "reward") {
        objective = await buildRewardObjective(request.examples, request.evalExamples, build);
      } else {
        objective = await buildSftObjective(request.examples, request.evalExamples, build);
      }
    } finally {
      await ownTokenizer?.dispose();
    }
    const loraGrads = zerosLike(lora, (n) => new Float32Array(n));
    const params = [...loraArrays(lora), ...objective.params];
    const fingerprint = {
      kind: objective.kind,
      base: basename(request.base),
      baseFile: await fileIdentity(request.base),
      architecture: config.architecture,
      initAdapter: init?.hash ?? null,
      ...objective.fingerprint,
      ...Object.fromEntries(Object.entries(o).filter(([k]) => !(unfingerprinted as readonly string[]).includes(k))),
    };
    return {
      options: o,
      objective,
      lora,
      loraGrads,
      arrays: {
        params,
        m: params.map((p) => new Float32Array(p.length)),
        v: params.map((p) => new Float32Array(p.length)),
      },
      grads: [...loraArrays(loraGrads), ...objective.grads],
      fingerprint,
      output: request.output,
      checkpointDir: join(request.output, "checkpoint"),
      config,
    };
  }
}

/**
 * Rank, alpha and targets of a run that starts from an existing adapter are the adapter's; asking for others is an
 * error (the adapter cannot change shape).
 */
function adoptAdapterShape(options: TrainOptions, init: LoadedAdapter): TrainOptions {
  const { rank, alpha, targets } = init.adapter;
  const given = {
    rank: options.rank,
    alpha: options.alpha,
    targets: options.targets === undefined ? undefined : parseLoraTargets(options.targets),
  };
  const conflicts = (["rank", "alpha", "targets"] as const).filter(
    (name) => given[name] !== undefined && JSON.stringify(given[name]) !== JSON.stringify(init.adapter[name]),
  );
  if (conflicts.length > 0) {
    throw new ConfigError(
      `the initial adapter has rank ${rank}, alpha ${alpha} and targets ${targets.join(",")}, but ${conflicts.map((name) => `${name} ${JSON.stringify(given[name])}`).join(" and ")} was asked for; leave them out to train the adapter as it is`,
      { path: init.source, field: conflicts[0] },
    );
  }
  return { ...options, rank, alpha, targets };
}

/** Writes adapter.gguf and peft/ (for a reward model: the head too, in both forms). */
async function exportAdapter(
  run: PreparedRun,
  base: string,
  config: LlamaConfig,
): Promise<Pick<TrainResult, "adapterPath" | "peftDir" | "rewardHeadPath">> {
  const adapterPath = join(run.output, "adapter.gguf");
  const peftDir = join(run.output, "peft");
  await writeGgufLora(adapterPath, run.lora, config.architecture, `${basename(base)}-lora`, config);
  const score = run.objective.peftScore?.();
  await writePeftAdapter(peftDir, run.lora, config, {
    baseModelName: run.options.baseModelName ?? basename(base),
    dropout: run.options.dropout,
    ...(score ? { score } : {}),
  });
  const extra = (await run.objective.export?.(run.output)) ?? {};
  return { adapterPath, peftDir, ...extra };
}

/**
 * Size and SHA-256 of the first and last MiB of a file: tells another base model from this one (a checkpoint must
 * not resume on it) without reading gigabytes.
 */
export async function fileIdentity(path: string): Promise<string> {
  const { size } = await stat(path);
  const chunk = 1 << 20;
  const hash = createHash("sha256");
  const handle = await open(path, "r");
  try {
    for (const at of size <= 2 * chunk ? [0] : [0, size - chunk]) {
      const buffer = Buffer.alloc(Math.min(size <= 2 * chunk ? size : chunk, size - at));
      await handle.read(buffer, 0, buffer.length, at);
      hash.update(buffer);
    }
  } finally {
    await handle.close();
  }
  return `${size}:${hash.digest("hex").slice(0, 16)}`;
}

/** Tokenised examples of a run, for tools that want to inspect what the trainer will see. */
export type { TokenizedExample };
