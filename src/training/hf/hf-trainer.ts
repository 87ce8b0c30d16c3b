/**
 * The GPU training path: the same `Trainer` contract as the embedded trainer, run by our own script
 * python/train_lora.py on transformers + peft under `accelerate launch` (one GPU, several GPUs, several machines
 * with DeepSpeed ZeRO-3 or FSDP). The examples are written as JSONL, the script's JSON progress lines come back
 * as `train-step` events, and the PEFT adapter lands in `<output>/peft`.
 */
import { type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { AbortedError, ConfigError, throwIfAborted } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type { Examples, LossPoint, SftExample, Trainer, TrainOptions, TrainRequest, TrainResult } from "../trainer.js";
import { HfTrainingError } from "./hf-training-error.js";
import { buildLaunchCommand, type HfLaunchOptions } from "./launch-command.js";
import { parseTrainerLine } from "./progress-parser.js";

export interface HfTrainerOptions extends HfLaunchOptions {
  /**
   * Check before launching that Python runs and imports torch, transformers, peft and accelerate, so a missing
   * package is one clear error instead of a traceback from every process. Default true.
   */
  preflight?: boolean;
  /** Extra environment for the training processes (e.g. CUDA_VISIBLE_DEVICES, NCCL_* settings). */
  env?: Record<string, string>;
}

const requiredPackages = ["torch", "transformers", "peft", "accelerate"] as const;

/** Lines kept from the script's output to explain a failure. */
const TAIL_LINES = 30;

export class HfTrainer implements Trainer {
  readonly name = "hf";

  constructor(private readonly options: HfTrainerOptions = {}) {}

  async train(request: TrainRequest): Promise<TrainResult> {
    const { signal, onProgress } = request;
    throwIfAborted(signal);
    if (request.kind === "preference" || request.kind === "reward") {
      throw new ConfigError(
        `hf trainer: the ${request.kind} kind is not available on the GPU path yet (it trains sft only); train it with the embedded trainer`,
        { field: "kind" },
      );
    }
    if (request.initAdapter !== undefined) {
      throw new ConfigError(
        "hf trainer: starting from an existing adapter (initAdapter) is not available on the GPU path yet; train it with the embedded trainer",
        { field: "initAdapter" },
      );
    }
    const output = resolve(request.output);
    const peftDir = join(output, "peft");
    const data = join(output, "sft.jsonl");
    const training = request.options ?? {};
    // Build (and so validate) the command before any side effect.
    const command = buildLaunchCommand({ model: request.base, data, output: peftDir, training }, this.options);
    warnUnsupported(training, onProgress);
    if (this.options.preflight ?? true) checkPython(this.options.python ?? "python3");

    await mkdir(output, { recursive: true });
    const count = await writeExamples(request.examples, data);
    if (request.evalExamples !== undefined) {
      onProgress?.({
        type: "message",
        level: "warn",
        text: "hf trainer ignores evalExamples (no held-out evaluation)",
      });
    }
    if (count === 0) throw new ConfigError("hf trainer: the dataset is empty; nothing to train on", { path: data });

    onProgress?.({ type: "stage-start", stage: "train", total: training.maxSteps });
    const lossCurve: LossPoint[] = [];
    let totalSteps = training.maxSteps ?? 0;
    let scriptError: string | undefined;
    let finalLoss = Number.NaN;
    const tail: string[] = [];
    const remember = (line: string) => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
    };

    const child = spawn(command.command, command.args, {
      env: { ...process.env, ...this.options.env, PYTHONUNBUFFERED: "1" },
      stdio: ["ignore", "pipe", "pipe"],
      // Own process group: an abort stops accelerate and every training process it started.
      detached: true,
    });
    const onAbort = () => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGTERM");
        } catch {
          // Already gone.
        }
      }
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    // The group is detached from our terminal, so Ctrl+C does not reach it: stop it if this process exits first.
    process.once("exit", onAbort);
    child.stderr.setEncoding("utf8");
    createInterface({ input: child.stderr }).on("line", remember);
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const parsed = parseTrainerLine(line);
      switch (parsed.kind) {
        case "train-start":
          totalSteps = parsed.totalSteps;
          onProgress?.({
            type: "message",
            level: "info",
            text: `hf trainer: ${parsed.totalSteps} steps on ${parsed.examples ?? "?"} examples, ${parsed.processes ?? command.processes} process(es)`,
          });
          break;
        case "train-step":
          totalSteps = parsed.totalSteps;
          lossCurve.push({
            step: parsed.step,
            loss: parsed.loss,
            learningRate: parsed.learningRate,
            tokens: parsed.tokens ?? 0,
            gradientNorm: parsed.gradientNorm ?? Number.NaN,
          });
          onProgress?.({
            type: "train-step",
            step: parsed.step,
            totalSteps: parsed.totalSteps,
            loss: parsed.loss,
            learningRate: parsed.learningRate,
            ...(parsed.tokensPerSecond === undefined ? {} : { tokensPerSecond: parsed.tokensPerSecond }),
          });
          break;
        case "train-end":
          finalLoss = parsed.finalLoss;
          break;
        case "error":
          scriptError = parsed.message;
          break;
        case "log":
          remember(parsed.text);
          break;
      }
    });

    let exitCode: number | null;
    let exitSignal: NodeJS.Signals | null;
    try {
      const [code, killedBy] = (await Promise.race([
        // "close" comes after the process exited and its stdout/stderr were fully read.
        once(child, "close"),
        once(child, "error").then(([error]) => {
          throw error;
        }),
      ])) as [number | null, NodeJS.Signals | null];
      exitCode = code;
      exitSignal = killedBy;
    } catch (error) {
      throw launchError(command.command, error);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      process.removeListener("exit", onAbort);
    }
    if (signal?.aborted) throw new AbortedError("GPU training was interrupted; the partial run is not saved.");
    if (exitCode !== 0 || scriptError !== undefined) {
      const reason = scriptError ?? `exited with ${exitSignal ?? `code ${exitCode}`}`;
      throw new HfTrainingError(
        `hf trainer: training failed: ${reason}\n` +
          `command: ${[command.command, ...command.args].join(" ")}\n` +
          `last output:\n${tail.join("\n")}`,
      );
    }
    const last = lossCurve.at(-1);
    onProgress?.({ type: "stage-end", stage: "train", done: last?.step ?? 0 });
    if (isWorker(this.options)) {
      // Only the main process reports and saves: this machine has no loss curve and no adapter of its own.
      return {
        kind: "sft",
        evalCurve: [],
        adapterPath: peftDir,
        peftDir,
        steps: 0,
        finalLoss: Number.NaN,
        lossCurve: [],
        worker: true,
      };
    }
    return {
      kind: "sft",
      evalCurve: [],
      // The GPU path writes a PEFT adapter; HfGgufTrainer converts it to a GGUF LoRA where llama.cpp needs one.
      adapterPath: peftDir,
      peftDir,
      steps: last?.step ?? totalSteps,
      finalLoss: Number.isNaN(finalLoss) ? (last?.loss ?? Number.NaN) : finalLoss,
      lossCurve,
    };
  }
}

/** A machine other than rank 0 of a multi-node run. */
export function isWorker(options: HfLaunchOptions): boolean {
  return options.mode === "multi-node" && (options.machineRank ?? 0) > 0;
}

/** Options of the shared TrainOptions that the GPU script does not implement: a warning, not an error. */
function warnUnsupported(training: TrainOptions, onProgress: ProgressListener | undefined): void {
  const ignored: string[] = [];
  if (training.resume) ignored.push("resume (the GPU script always starts from the base model)");
  if (training.checkpointEvery !== undefined) ignored.push("checkpointEvery");
  if (training.batchTokens !== undefined) ignored.push("batchTokens (use the hf trainer's batchSize)");
  if (training.kernel !== undefined || training.threads !== undefined) ignored.push("kernel/threads (CPU only)");
  if (training.evalFraction || training.evalEvery) ignored.push("evalFraction/evalEvery (no held-out evaluation)");
  if (ignored.length > 0) {
    onProgress?.({ type: "message", level: "warn", text: `hf trainer ignores: ${ignored.join("; ")}` });
  }
}

/** Throws HfTrainingError when Python is missing or lacks one of the packages the script imports. */
export function checkPython(python: string): void {
  const probe = `import importlib.util, sys
missing = [name for name in ${JSON.stringify(requiredPackages)} if importlib.util.find_spec(name) is None]
print(",".join(missing))`;
  let result: SpawnSyncReturns<string>;
  try {
    result = spawnSync(python, ["-c", probe], { encoding: "utf8", timeout: 60_000 });
  } catch (error) {
    throw launchError(python, error);
  }
  if (result.error) throw launchError(python, result.error);
  if (result.status !== 0) {
    throw new HfTrainingError(`hf trainer: ${python} failed to run: ${result.stderr.trim().split("\n").at(-1) ?? ""}`);
  }
  const missing = result.stdout.trim();
  if (missing !== "") {
    throw new HfTrainingError(
      `hf trainer: ${python} lacks the Python packages ${missing.split(",").join(", ")}; ` +
        `install them with \`${python} -m pip install torch transformers peft accelerate\` ` +
        "(plus deepspeed for ZeRO-3), or point the python option at an environment that has them",
    );
  }
}

function launchError(command: string, error: unknown): HfTrainingError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") {
    return new HfTrainingError(
      `hf trainer: cannot run "${command}": not found. Install Python 3 with torch, transformers, peft and ` +
        "accelerate, or set the python option to its interpreter",
      { cause: error },
    );
  }
  return new HfTrainingError(`hf trainer: cannot run "${command}": ${(error as Error).message}`, { cause: error });
}

async function writeExamples(examples: Examples<SftExample>, path: string): Promise<number> {
  const stream = createWriteStream(path, { encoding: "utf8" });
  let count = 0;
  try {
    for await (const example of examples as AsyncIterable<SftExample>) {
      const record: SftExample = { prompt: example.prompt, completion: example.completion };
      if (!stream.write(`${JSON.stringify(record)}\n`)) await once(stream, "drain");
      count++;
    }
  } finally {
    stream.end();
    await once(stream, "finish");
  }
  return count;
}
