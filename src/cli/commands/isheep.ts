/**
 * `selfalign isheep`: I-SHEEP alone — the `isheep` group of the registry, every other stage skipped — from flags
 * (`--model m.gguf --rounds 3`) or from a config file whose `stages.isheep` holds the options (`--config`); the flags
 * given override the file. The same run as `selfalign run` with `stages.isheep: { skip: false }` and the other stages
 * skipped.
 */
import { basename, resolve } from "node:path";
import type { Command } from "commander";
import { ConfigError } from "../../errors/index.js";
import type { LoadedPipelineConfig } from "../../pipeline/pipeline-config.js";
import { defaultRegistry } from "../../pipeline/stage-registry.js";
import { isheepGroupName, isheepStages } from "../../stages/isheep/stage-names.js";
import { positiveInteger } from "../flags.js";
import { runPipelineCommand } from "./run.js";

export interface IsheepCommandOptions {
  config?: string;
  model?: string;
  trainBase?: string;
  run?: string;
  seed?: number;
  rounds?: number;
  prompts?: number;
  variant?: string;
  rater?: string;
  threshold?: number;
  ratings?: string;
  stopOn?: string;
  probes?: number;
}

const nonNegativeNumber = (flag: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) {
    throw new ConfigError(`--${flag} must be a non-negative number, got "${value}"`, { field: flag });
  }
  return n;
};

const defined = (entries: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(entries).filter(([, value]) => value !== undefined));

/** The pipeline config the command runs: the file's (or an empty one), I-SHEEP on, the rest off, flags applied. */
export async function isheepPipelineConfig(options: IsheepCommandOptions): Promise<LoadedPipelineConfig> {
  const { loadPipelineConfig, parsePipelineConfig } = await import("../../pipeline/pipeline-config.js");
  const loaded = options.config ? await loadPipelineConfig(options.config) : undefined;
  const file = (loaded?.config ?? {}) as Record<string, unknown>;
  const model = options.model ?? file.model;
  if (model === undefined) {
    throw new ConfigError("no model: pass --model (a .gguf path, hf: URI or server spec) or --config <file>", {
      field: "model",
    });
  }
  const stages = (file.stages ?? {}) as Record<string, Record<string, unknown>>;
  const isheep = stages[isheepGroupName] ?? {};
  const member = (name: string, values: Record<string, unknown>) => ({ ...(isheep[name] ?? {}), ...defined(values) });
  const runDir = options.run ?? (file.runDir as string | undefined);
  const value = {
    ...file,
    name: file.name ?? (runDir ? basename(resolve(runDir)) : "isheep"),
    model,
    ...defined({ trainBase: options.trainBase ?? file.trainBase, runDir, seed: options.seed ?? file.seed }),
    stages: {
      ...Object.fromEntries(
        defaultRegistry.filter((entry) => entry.name !== isheepGroupName).map((entry) => [entry.name, { skip: true }]),
      ),
      [isheepGroupName]: {
        ...isheep,
        skip: false,
        ...defined({
          rounds: options.rounds,
          stopOn: options.stopOn?.split(",").map((signal) => signal.trim()),
        }),
        [isheepStages.prompts]: member(isheepStages.prompts, { target: options.prompts }),
        [isheepStages.rate]: member(isheepStages.rate, { rater: options.rater }),
        [isheepStages.keep]: member(isheepStages.keep, { threshold: options.threshold, ratings: options.ratings }),
        [isheepStages.train]: member(isheepStages.train, { variant: options.variant }),
        [isheepStages.eval]: member(isheepStages.eval, { probes: options.probes }),
      },
    },
  };
  const source = options.config ?? "selfalign isheep flags";
  return {
    config: parsePipelineConfig(value, source),
    ...(loaded?.path ? { path: loaded.path } : {}),
    baseDir: loaded?.baseDir ?? process.cwd(),
  };
}

export function registerIsheep(program: Command): void {
  program
    .command("isheep")
    .description(
      "Run I-SHEEP alone: rounds of self-written prompts, zero-shot answers, rule filter, self-assessment, keep, LoRA training and a probe eval, each round with the last round's adapter. Resumable.",
    )
    .option("--config <file>", "config file; its stages.isheep options are used (the other stages are skipped)")
    .option("--model <spec>", "base model: .gguf path, hf: URI, or server spec")
    .option("--train-base <gguf>", "GGUF the trainer loads when --model is a server")
    .option("--run <dir>", "run directory (default runs/<name>, name 'isheep')")
    .option("--seed <n>", "base seed (default 42)", nonNegativeNumber("seed"))
    .option("--rounds <n>", "rounds to run (default 2)", positiveInteger("rounds"))
    .option("--prompts <n>", "prompts to keep per round (default 100)", positiveInteger("prompts"))
    .option("--variant <name>", "training: one-base (default), total-base, one-last")
    .option("--rater <who>", "self-assessment by the round's model (current, default) or the base")
    .option("--threshold <n>", "keep pairs scored above this (default 8)", nonNegativeNumber("threshold"))
    .option("--ratings <which>", "ratings that must pass: both (default), quality, following")
    .option("--stop-on <signals>", "stop early when these stop improving: kept-rate, eval-score (comma-separated)")
    .option("--probes <n>", "seed tasks in the per-round eval (default 20; 0: off)", nonNegativeNumber("probes"))
    .action(async (options: IsheepCommandOptions) => {
      await runPipelineCommand(await isheepPipelineConfig(options));
    });
}
