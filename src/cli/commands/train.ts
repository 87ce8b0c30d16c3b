import type { Command } from "commander";
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { parseJsonLines, readDataFile, validateData } from "../../eval/data/read-data-file.js";
import type { ProgressEvent } from "../../progress/progress-event.js";
import { describeMetrics } from "../progress-renderer.js";
import { HfGgufTrainer, HfTrainer, hfTrainerOptionsSchema } from "../../training/hf/index.js";
import { kernelNames } from "../../training/embedded/kernels/kernel.js";
import { parseLoraTargets } from "../../training/embedded/lora.js";
import {
  learningRateSchedules,
  overlongPolicies,
  type PreferenceExample,
  type PreferenceOptions,
  preferenceLosses,
  preferenceOptionDefaults,
  type SftExample,
  staleCheckpointPolicies,
  type TrainOptions,
  type TrainRequest,
  trainKinds,
  trainOptionDefaults as defaults,
} from "../../training/trainer.js";

const sftExampleSchema = z.object({ prompt: z.string(), completion: z.string() });
const preferenceExampleSchema = z.object({ prompt: z.string(), chosen: z.string(), rejected: z.string() });

function number(name: string, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < 0) {
      throw new ConfigError(`--${name} must be a non-negative ${integer ? "integer" : "number"}, got "${value}"`);
    }
    return n;
  };
}

function oneOf<T extends string>(name: string, allowed: readonly T[]) {
  return (value: string): T => {
    if (!(allowed as readonly string[]).includes(value)) {
      throw new ConfigError(`--${name} must be one of ${allowed.join(", ")}, got "${value}"`);
    }
    return value as T;
  };
}

/**
 * Read prompt/completion JSONL. Unlike run-store records these need no `id` (hand-written data is welcome), and a
 * missing final newline is fine; every bad line is an error naming the file, line and field.
 */
export async function readSftJsonl(path: string): Promise<SftExample[]> {
  const expected = 'one {"prompt": string, "completion": string} per line';
  const text = await readDataFile(path, expected);
  return parseJsonLines(text, path, expected).map(({ line, value }) =>
    validateData(sftExampleSchema, value, { path, line }, expected),
  );
}

/** Read prompt/chosen/rejected JSONL (the preference and reward kinds), with the same rules as readSftJsonl. */
export async function readPreferenceJsonl(path: string): Promise<PreferenceExample[]> {
  const expected = 'one {"prompt": string, "chosen": string, "rejected": string} per line';
  const text = await readDataFile(path, expected);
  return parseJsonLines(text, path, expected).map(({ line, value }) =>
    validateData(preferenceExampleSchema, value, { path, line }, expected),
  );
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description(
      "Train a LoRA adapter: SFT on prompt/completion JSONL (loss on completions), DPO or a reward model on " +
        "prompt/chosen/rejected JSONL, on this machine's CPU, or (SFT) with --trainer hf on GPUs (transformers + peft " +
        "under accelerate, one or several machines).",
    )
    .requiredOption(
      "--base <path>",
      "base model: a .gguf (llama, mistral, qwen2 architectures); with --trainer hf a Hugging Face folder or hub id",
    )
    .requiredOption(
      "--data <path>",
      "training data: JSONL of {prompt, completion} (sft) or {prompt, chosen, rejected} (preference, reward)",
    )
    .requiredOption("--out <dir>", "output folder: adapter.gguf, peft/, checkpoint/, loss.jsonl")
    .option(
      "--kind <kind>",
      "sft | preference (DPO / IPO against a frozen reference) | reward (LoRA + scalar head, pairwise loss)",
      oneOf("kind", trainKinds),
      "sft",
    )
    .option("--eval-data <path>", "held-out examples in the same format, evaluated into eval.jsonl")
    .option(
      "--eval-fraction <x>",
      "share of --data held out for evaluation (seeded), 0 to 0.5",
      number("eval-fraction", false),
      defaults.evalFraction,
    )
    .option(
      "--eval-every <n>",
      "evaluate every N steps (and at the start and end)",
      number("eval-every", true),
      defaults.evalEvery,
    )
    .option("--init-adapter <path>", "start from this adapter (GGUF LoRA, PEFT folder or a training's output folder)")
    .option("--beta <x>", "preference: DPO beta", number("beta", false), preferenceOptionDefaults.beta)
    .option(
      "--preference-loss <name>",
      `preference: ${preferenceLosses.join(" | ")}`,
      oneOf("preference-loss", preferenceLosses),
      preferenceOptionDefaults.loss,
    )
    .option(
      "--label-smoothing <x>",
      "preference: conservative DPO's label noise, in [0, 0.5)",
      number("label-smoothing", false),
      preferenceOptionDefaults.labelSmoothing,
    )
    .option(
      "--reference <ref>",
      "preference: frozen reference: init (the starting adapter, or the base) | base | <adapter path>",
      preferenceOptionDefaults.reference,
    )
    .option("--rank <n>", "LoRA rank", number("rank", true), defaults.rank)
    .option("--alpha <x>", "LoRA alpha (scale = alpha / rank)", number("alpha", false), defaults.alpha)
    .option("--dropout <p>", "LoRA dropout", number("dropout", false), defaults.dropout)
    .option("--targets <list>", "adapted projections: q,k,v,o,gate,up,down", defaults.targets.join(","))
    .option("--lr <x>", "peak learning rate", number("lr", false), defaults.learningRate)
    .option("--epochs <n>", "epochs", number("epochs", true), defaults.epochs)
    .option("--max-steps <n>", "stop after this many optimizer steps", number("max-steps", true))
    .option(
      "--batch-tokens <n>",
      "tokens per micro-batch (length-bucketed packing)",
      number("batch-tokens", true),
      defaults.batchTokens,
    )
    .option(
      "--grad-accum <n>",
      "micro-batches per optimizer step",
      number("grad-accum", true),
      defaults.gradientAccumulation,
    )
    .option("--warmup <n>", "linear warm-up steps", number("warmup", true), defaults.warmupSteps)
    .option(
      "--schedule <name>",
      `learning-rate decay: ${learningRateSchedules.join(" | ")}`,
      oneOf("schedule", learningRateSchedules),
      defaults.schedule,
    )
    .option("--weight-decay <x>", "AdamW weight decay", number("weight-decay", false), defaults.weightDecay)
    .option(
      "--max-grad-norm <x>",
      "clip the global gradient norm (0 = off)",
      number("max-grad-norm", false),
      defaults.maxGradNorm,
    )
    .option("--cutoff-len <n>", "longest example in tokens (default: the model's context)", number("cutoff-len", true))
    .option(
      "--overlong <policy>",
      `examples longer than the cutoff: ${overlongPolicies.join(" | ")}`,
      oneOf("overlong", overlongPolicies),
      defaults.overlong,
    )
    .option("--seed <n>", "seed of init, data order and dropout", number("seed", true), defaults.seed)
    .option(
      "--checkpoint-every <n>",
      "save a checkpoint every N steps (0 = only at the end)",
      number("checkpoint-every", true),
      defaults.checkpointEvery,
    )
    .option(
      "--kernel <name>",
      `matmul kernel: auto | ${kernelNames.join(" | ")}`,
      oneOf("kernel", ["auto", ...kernelNames] as const),
      defaults.kernel,
    )
    .option("--threads <n>", "kernel threads", number("threads", true))
    .option(
      "--activation-checkpointing <mode>",
      "recompute each layer in the backward to save memory: auto | on | off",
      oneOf("activation-checkpointing", ["auto", "on", "off"] as const),
      "auto",
    )
    .option("--resume", "continue from <out>/checkpoint", false)
    .option(
      "--stale-checkpoint <policy>",
      "a checkpoint made with other settings or data: restart (set it aside in <out>/stale-checkpoints/) | error",
      oneOf("stale-checkpoint", staleCheckpointPolicies),
      defaults.staleCheckpoint,
    )
    .option(
      "--trainer <name>",
      "embedded (this machine's CPU) | hf (transformers + peft via accelerate on GPUs)",
      oneOf("trainer", ["embedded", "hf"] as const),
      "embedded",
    )
    .option("--hf-mode <mode>", "hf trainer: single-gpu | multi-gpu | multi-node")
    .option("--hf-gpus <n>", "hf trainer: GPUs per machine", number("hf-gpus", true))
    .option("--hf-distributed <backend>", "hf trainer: ddp | deepspeed-zero3 | fsdp (see python/configs)")
    .option("--machines <n>", "hf trainer, multi-node: machines taking part", number("machines", true))
    .option(
      "--machine-rank <n>",
      "hf trainer, multi-node: this machine's rank (0 = main)",
      number("machine-rank", true),
    )
    .option("--main-process-ip <address>", "hf trainer, multi-node: address of the rank-0 machine")
    .option("--main-process-port <port>", "hf trainer, multi-node: its port (default 29500)", number("port", true))
    .option("--batch-size <n>", "hf trainer: sequences per micro-batch per GPU (default 4)", number("batch-size", true))
    .option("--mixed-precision <mode>", "hf trainer: bf16 | fp16 | no (default bf16; fp16 on GPUs without bf16)")
    .option("--python <path>", "hf trainer: Python with torch, transformers, peft, accelerate (default python3)")
    .option(
      "--env <name=value>",
      "hf trainer: environment for the training processes, e.g. NCCL_SOCKET_IFNAME=eth0 (repeatable)",
      (value: string, all: string[] = []) => [...all, value],
    )
    .option(
      "--gguf <path>",
      "hf trainer: the base as .gguf; the PEFT adapter is converted to <out>/adapter.gguf for it",
    )
    .action(async (flags, command: Command) => {
      const options: TrainOptions = {
        rank: flags.rank,
        alpha: flags.alpha,
        dropout: flags.dropout,
        targets: parseLoraTargets(
          String(flags.targets)
            .split(",")
            .map((t) => t.trim())
            .filter(Boolean),
        ),
        learningRate: flags.lr,
        epochs: flags.epochs,
        maxSteps: flags.maxSteps,
        batchTokens: flags.batchTokens,
        gradientAccumulation: flags.gradAccum,
        warmupSteps: flags.warmup,
        schedule: flags.schedule,
        weightDecay: flags.weightDecay,
        maxGradNorm: flags.maxGradNorm,
        cutoffLen: flags.cutoffLen,
        overlong: flags.overlong,
        seed: flags.seed,
        checkpointEvery: flags.checkpointEvery,
        kernel: flags.kernel,
        threads: flags.threads,
        resume: flags.resume,
        staleCheckpoint: flags.staleCheckpoint,
        evalFraction: flags.evalFraction,
        evalEvery: flags.evalEvery,
        activationCheckpointing:
          flags.activationCheckpointing === "auto" ? "auto" : flags.activationCheckpointing === "on",
      };
      if (flags.trainer === "hf") {
        // The CPU trainer's own settings: only passed on (and warned about) when given on the command line.
        const cpuOnly = { checkpointEvery: "checkpointEvery", batchTokens: "batchTokens", kernel: "kernel" } as const;
        for (const [flag, option] of Object.entries(cpuOnly))
          if (command.getOptionValueSource(flag) === "default") delete options[option];
      }
      const controller = new AbortController();
      const onSigint = () => controller.abort();
      process.once("SIGINT", onSigint);
      try {
        // Loaded here, not at the top: the embedded trainer pulls in node-llama-cpp.
        const { EmbeddedTrainer } = await import("../../training/embedded/embedded-trainer.js");
        const hfFlags = hfFlagValues(flags);
        if (flags.trainer !== "hf" && (Object.keys(hfFlags).length > 0 || flags.gguf)) {
          const given = hfFlagNames.filter(([, field]) => field in hfFlags).map(([name]) => `--${name}`);
          throw new ConfigError(
            `${[...given, ...(flags.gguf ? ["--gguf"] : [])].join(", ")} configure the GPU trainer; add --trainer hf`,
          );
        }
        const hfOptions = flags.trainer === "hf" ? parseHfTrainerOptions(hfFlags) : undefined;
        const trainer = !hfOptions
          ? new EmbeddedTrainer()
          : flags.gguf
            ? new HfGgufTrainer({ ...hfOptions, hfBase: flags.base })
            : new HfTrainer(hfOptions);
        const common = {
          base: hfOptions && flags.gguf ? flags.gguf : flags.base,
          output: flags.out,
          options,
          ...(flags.initAdapter ? { initAdapter: flags.initAdapter } : {}),
          signal: controller.signal,
          onProgress: (event: ProgressEvent) => {
            if (event.type === "train-step") {
              const rate = event.tokensPerSecond === undefined ? "" : ` ${event.tokensPerSecond.toFixed(0)} tok/s`;
              const pairs =
                event.accuracy === undefined
                  ? ""
                  : ` accuracy ${event.accuracy.toFixed(2)} margin ${(event.margin ?? 0).toFixed(3)}`;
              process.stdout.write(
                `step ${event.step}/${event.totalSteps} loss ${event.loss.toFixed(4)}${pairs} lr ${event.learningRate.toExponential(2)}${rate}\n`,
              );
            } else if (event.type === "train-eval") {
              process.stdout.write(`eval at step ${event.step}/${event.totalSteps}: ${describeMetrics(event)}\n`);
            } else if (event.type === "message") {
              process.stderr.write(`${event.level}: ${event.text}\n`);
            }
          },
        };
        const result = await trainer.train(await trainRequest(flags, common));
        if (result.worker) {
          process.stdout.write(
            `this machine (rank ${hfOptions?.machineRank}) trained as a worker; the main machine (rank 0) reports ` +
              `the progress and writes the adapter to ${result.peftDir}/${flags.gguf ? ` and ${result.adapterPath}` : ""}\n`,
          );
        } else {
          process.stdout.write(
            `wrote ${result.adapterPath}${result.adapterPath === result.peftDir ? "" : ` and ${result.peftDir}/`} after ${result.steps} steps (final loss ${result.finalLoss.toFixed(4)})\n`,
          );
        }
      } finally {
        process.off("SIGINT", onSigint);
      }
    });
}

/** CLI flag -> field of the hf trainer's options (the schema's names). */
const hfFlagNames = [
  ["hf-mode", "mode"],
  ["hf-gpus", "gpusPerMachine"],
  ["hf-distributed", "distributed"],
  ["machines", "machines"],
  ["machine-rank", "machineRank"],
  ["main-process-ip", "mainProcessIp"],
  ["main-process-port", "mainProcessPort"],
  ["batch-size", "batchSize"],
  ["mixed-precision", "mixedPrecision"],
  ["python", "python"],
  ["env", "env"],
] as const;

/** The hf trainer's fields given on the command line (`--env A=1 --env B=2` -> { env: { A: "1", B: "2" } }). */
function hfFlagValues(flags: Record<string, unknown>): Record<string, unknown> {
  const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  const values: Record<string, unknown> = {};
  for (const [name, field] of hfFlagNames) {
    const value = flags[camel(name)];
    if (value === undefined) continue;
    if (field === "env") {
      const env: Record<string, string> = {};
      for (const pair of value as string[]) {
        const at = pair.indexOf("=");
        if (at <= 0) throw new ConfigError(`--env: expected NAME=value, got "${pair}"`, { field: "env" });
        env[pair.slice(0, at)] = pair.slice(at + 1);
      }
      values.env = env;
    } else values[field] = value;
  }
  return values;
}

/** Validate hf trainer flags with the trainer's own schema, naming the flag on error. */
function parseHfTrainerOptions(value: Record<string, unknown>) {
  const parsed = hfTrainerOptionsSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = String(issue.path[0] ?? "option");
    const name = hfFlagNames.find(([, f]) => f === field)?.[0] ?? field;
    throw new ConfigError(`--${name}: ${issue.message}`, { field });
  }
  return parsed.data;
}

/** The request of the chosen kind: the data read and validated in that kind's format. */
async function trainRequest(
  flags: Record<string, unknown>,
  common: Omit<TrainRequest, "kind" | "examples" | "evalExamples">,
): Promise<TrainRequest> {
  const evalData = flags.evalData as string | undefined;
  if (flags.kind === "sft") {
    const examples = await readSftJsonl(flags.data as string);
    return { ...common, kind: "sft", examples, ...(evalData ? { evalExamples: await readSftJsonl(evalData) } : {}) };
  }
  const examples = await readPreferenceJsonl(flags.data as string);
  const evalExamples = evalData ? { evalExamples: await readPreferenceJsonl(evalData) } : {};
  if (flags.kind === "reward") return { ...common, kind: "reward", examples, ...evalExamples };
  const reference = String(flags.reference);
  const preference: PreferenceOptions = {
    beta: flags.beta as number,
    loss: flags.preferenceLoss as PreferenceOptions["loss"],
    labelSmoothing: flags.labelSmoothing as number,
    reference: reference === "init" || reference === "base" ? reference : { adapter: reference },
  };
  return { ...common, kind: "preference", examples, ...evalExamples, preference };
}
