/**
 * Builds the command line that runs python/train_lora.py: through `accelerate launch` with one of our configs in
 * python/configs/ (single GPU, multi-GPU DDP, DeepSpeed ZeRO-3 or FSDP, on one or several machines), or
 * directly with Python for a one-process run. Pure: nothing is spawned here.
 */
import { join } from "node:path";
import { ConfigError } from "../../errors/index.js";
import { peftTargetModule } from "../embedded/lora.js";
import { packageRoot } from "../../package-root.js";
import { type TrainOptions, trainOptionDefaults } from "../trainer.js";

export const hfLaunchModes = ["single-gpu", "multi-gpu", "multi-node"] as const;
export type HfLaunchMode = (typeof hfLaunchModes)[number];

export const hfDistributedBackends = ["ddp", "deepspeed-zero3", "fsdp"] as const;
export type HfDistributedBackend = (typeof hfDistributedBackends)[number];

export const hfLaunchers = ["accelerate", "python"] as const;
export type HfLauncher = (typeof hfLaunchers)[number];

export interface HfLaunchOptions {
  /** `accelerate` (default): `python -m accelerate.commands.launch`; `python`: the script alone, one process. */
  launcher?: HfLauncher;
  /** Default "single-gpu". */
  mode?: HfLaunchMode;
  /** Multi-GPU / multi-node strategy. Default "ddp" on one machine, "deepspeed-zero3" across machines. */
  distributed?: HfDistributedBackend;
  /** GPUs (processes) per machine. Default 1 for single-gpu; otherwise required unless numProcesses is given. */
  gpusPerMachine?: number;
  /** Processes across all machines (accelerate's --num_processes): machines × gpusPerMachine. */
  numProcesses?: number;
  /** An accelerate config YAML of your own, instead of ours from python/configs (e.g. other FSDP settings). */
  accelerateConfig?: string;
  /** A DeepSpeed config JSON of your own, instead of our deepspeed_zero3.json (distributed "deepspeed-zero3"). */
  deepspeedConfig?: string;
  /** Machines taking part (multi-node, >= 2). */
  machines?: number;
  /** This machine's rank, 0 on the main machine. Default 0. */
  machineRank?: number;
  /** Address of the rank-0 machine (multi-node). */
  mainProcessIp?: string;
  /** Default 29500. */
  mainProcessPort?: number;
  /** Default "bf16". */
  mixedPrecision?: "bf16" | "fp16" | "no";
  /** Python interpreter with torch, transformers, peft and accelerate. Default "python3". */
  python?: string;
  /** Training script. Default: the package's python/train_lora.py. */
  script?: string;
  /** Directory of the accelerate/DeepSpeed/FSDP configs. Default: the package's python/configs. */
  configDir?: string;
  /** Sequences per micro-batch per GPU. Default 4. */
  batchSize?: number;
  /** Weights dtype passed to the script. Default "auto" (bf16 where the GPU supports it). */
  dtype?: "auto" | "bfloat16" | "float16" | "float32";
}

export interface HfScriptInputs {
  /** Hugging Face model directory or hub id. */
  model: string;
  /** SFT JSONL with prompt/completion. */
  data: string;
  /** Where the PEFT adapter is saved. */
  output: string;
  training?: TrainOptions;
}

export interface LaunchCommand {
  command: string;
  args: string[];
  /** Total processes across all machines. */
  processes: number;
}

function positiveInteger(value: number | undefined, field: string, fallback?: number): number {
  const resolved = value ?? fallback;
  if (resolved === undefined || !Number.isInteger(resolved) || resolved < 1) {
    throw new ConfigError(
      `hf trainer: ${field} must be a positive integer, got ${value === undefined ? "nothing" : value}`,
      { field },
    );
  }
  return resolved;
}

/** Arguments of train_lora.py from the shared TrainOptions (the embedded trainer's defaults, but a 2048-token cutoff and gradient checkpointing on). */
export function scriptArguments(inputs: HfScriptInputs, launch: HfLaunchOptions = {}): string[] {
  const o = inputs.training ?? {};
  const d = trainOptionDefaults;
  const targets = (o.targets ?? d.targets).map(peftTargetModule);
  const args = [
    "--model",
    inputs.model,
    "--data",
    inputs.data,
    "--output",
    inputs.output,
    "--rank",
    String(o.rank ?? d.rank),
    "--alpha",
    String(o.alpha ?? d.alpha),
    "--dropout",
    String(o.dropout ?? d.dropout),
    "--target-modules",
    targets.join(","),
    "--learning-rate",
    String(o.learningRate ?? d.learningRate),
    "--epochs",
    String(o.epochs ?? d.epochs),
    "--batch-size",
    String(positiveInteger(launch.batchSize, "batchSize", 4)),
    "--gradient-accumulation",
    String(positiveInteger(o.gradientAccumulation, "gradientAccumulation", d.gradientAccumulation)),
    "--warmup-steps",
    String(o.warmupSteps ?? d.warmupSteps),
    "--schedule",
    o.schedule ?? d.schedule,
    "--weight-decay",
    String(o.weightDecay ?? d.weightDecay),
    "--max-grad-norm",
    String(o.maxGradNorm ?? d.maxGradNorm),
    "--cutoff-len",
    String(o.cutoffLen ?? 2048),
    "--overlong",
    o.overlong ?? d.overlong,
    "--seed",
    String(o.seed ?? d.seed),
    "--dtype",
    launch.dtype ?? "auto",
  ];
  if (o.maxSteps !== undefined) args.push("--max-steps", String(positiveInteger(o.maxSteps, "maxSteps")));
  if (o.activationCheckpointing ?? true) args.push("--gradient-checkpointing");
  return args;
}

/** The full command: launcher, launcher flags, script, script arguments. Throws ConfigError on a bad combination. */
export function buildLaunchCommand(inputs: HfScriptInputs, launch: HfLaunchOptions = {}): LaunchCommand {
  const root = packageRoot();
  const python = launch.python ?? "python3";
  const script = launch.script ?? join(root, "python", "train_lora.py");
  const configDir = launch.configDir ?? join(root, "python", "configs");
  const scriptArgs = scriptArguments(inputs, launch);
  const launcher = launch.launcher ?? "accelerate";
  const mode = launch.mode ?? "single-gpu";
  if (!(hfLaunchModes as readonly string[]).includes(mode)) {
    throw new ConfigError(`hf trainer: mode must be one of ${hfLaunchModes.join(", ")}, got "${mode}"`, {
      field: "mode",
    });
  }
  if (launcher === "python") {
    if (mode !== "single-gpu") {
      throw new ConfigError(
        `hf trainer: launcher "python" runs one process; mode "${mode}" needs launcher "accelerate"`,
        {
          field: "launcher",
        },
      );
    }
    return { command: python, args: [script, ...scriptArgs], processes: 1 };
  }

  const machines = mode === "multi-node" ? positiveInteger(launch.machines, "machines") : 1;
  if (launch.numProcesses !== undefined) {
    const total = positiveInteger(launch.numProcesses, "numProcesses");
    if (total % machines !== 0 || (launch.gpusPerMachine !== undefined && launch.gpusPerMachine * machines !== total)) {
      throw new ConfigError(
        `hf trainer: numProcesses ${total} must equal machines (${machines}) × gpusPerMachine` +
          `${launch.gpusPerMachine === undefined ? "" : ` (${launch.gpusPerMachine})`}; give one of the two`,
        { field: "numProcesses" },
      );
    }
  }
  const gpus = positiveInteger(
    launch.gpusPerMachine ?? (launch.numProcesses === undefined ? undefined : launch.numProcesses / machines),
    "gpusPerMachine",
    mode === "single-gpu" ? 1 : undefined,
  );
  if (mode === "single-gpu" && gpus !== 1) {
    throw new ConfigError(`hf trainer: mode "single-gpu" uses 1 GPU, got gpusPerMachine ${gpus}; use "multi-gpu"`, {
      field: "gpusPerMachine",
    });
  }
  if (mode === "multi-node" && machines < 2) {
    throw new ConfigError(`hf trainer: mode "multi-node" needs machines >= 2, got ${machines}`, { field: "machines" });
  }
  const distributed = launch.distributed ?? (mode === "multi-node" ? "deepspeed-zero3" : "ddp");
  if (!(hfDistributedBackends as readonly string[]).includes(distributed)) {
    throw new ConfigError(
      `hf trainer: distributed must be one of ${hfDistributedBackends.join(", ")}, got "${distributed}"`,
      { field: "distributed" },
    );
  }
  const processes = gpus * machines;
  const accelerateArgs: string[] = ["-m", "accelerate.commands.launch"];
  const ours = (name: string) => launch.accelerateConfig ?? join(configDir, name);
  if (launch.deepspeedConfig !== undefined && (mode === "single-gpu" || distributed !== "deepspeed-zero3")) {
    throw new ConfigError(
      `hf trainer: deepspeedConfig is used with distributed "deepspeed-zero3", got ${mode === "single-gpu" ? 'mode "single-gpu"' : `distributed "${distributed}"`}`,
      { field: "deepspeedConfig" },
    );
  }
  if (mode === "single-gpu") {
    accelerateArgs.push("--config_file", ours("single_gpu.yaml"));
  } else if (distributed === "ddp") {
    accelerateArgs.push("--config_file", ours("multi_gpu.yaml"));
  } else if (distributed === "deepspeed-zero3") {
    accelerateArgs.push(
      "--config_file",
      ours("deepspeed_zero3.yaml"),
      "--deepspeed_config_file",
      launch.deepspeedConfig ?? join(configDir, "deepspeed_zero3.json"),
    );
  } else {
    accelerateArgs.push("--config_file", ours("fsdp.yaml"));
  }
  accelerateArgs.push(
    "--num_processes",
    String(processes),
    "--num_machines",
    String(machines),
    "--mixed_precision",
    launch.mixedPrecision ?? "bf16",
  );
  if (mode === "multi-node") {
    if (!launch.mainProcessIp) {
      throw new ConfigError("hf trainer: mode multi-node needs mainProcessIp, the address of the rank-0 machine", {
        field: "mainProcessIp",
      });
    }
    const rank = launch.machineRank ?? 0;
    if (!Number.isInteger(rank) || rank < 0 || rank >= machines) {
      throw new ConfigError(`hf trainer: machineRank must be in 0..${machines - 1}, got ${rank}`, {
        field: "machineRank",
      });
    }
    accelerateArgs.push(
      "--machine_rank",
      String(rank),
      "--main_process_ip",
      launch.mainProcessIp,
      "--main_process_port",
      String(positiveInteger(launch.mainProcessPort, "mainProcessPort", 29500)),
    );
  }
  return { command: python, args: [...accelerateArgs, script, ...scriptArgs], processes };
}
