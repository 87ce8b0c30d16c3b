/**
 * `selfalign stage self-instruct|red-team|self-align --run <dir>`: run one generation stage into a run directory,
 * resumable (run the same command again after Ctrl+C) and shardable (`--shard i/n`).
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import type { LanguageModel } from "../../backends/language-model.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { openRun, parseShard, type Shard } from "../../run-store/index.js";
import { questionSamplingDefaults, runRedTeam, topicSamplingDefaults } from "../../stages/red-team/run.js";
import { readSelfAlignInputs } from "../../stages/self-align/inputs.js";
import { runSelfAlign, selfAlignSamplingDefaults } from "../../stages/self-align/run.js";
import { runSelfInstruct, selfInstructSamplingDefaults } from "../../stages/self-instruct/run.js";
import { checkStageSettings } from "../../stages/shared/stage-settings.js";
import { withProgress } from "../with-progress.js";

export const generationStages = ["self-instruct", "red-team", "self-align"] as const;
export type GenerationStage = (typeof generationStages)[number];

export interface StageCommandOptions {
  run: string;
  model?: string;
  shard?: string;
  target?: number;
  constitution?: string;
  seed?: number;
  batchSize?: number;
  epochs?: number;
  maxTopicsPerType?: number;
  maxTokens?: number;
  temperature?: number;
  maxRoundsWithoutProgress?: number;
}

function positive(name: string, allowZero = false) {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < 0 || (!allowZero && parsed === 0)) {
      throw new ConfigError(`--${name} expects a ${allowZero ? "non-negative" : "positive"} number, got "${value}"`, {
        field: name,
      });
    }
    return parsed;
  };
}

/** Run one stage; used by the command and by tests. Returns a one-line summary. */
export async function runStageCommand(
  stage: GenerationStage,
  options: StageCommandOptions,
  onProgress?: ProgressListener,
  signal?: AbortSignal,
): Promise<string> {
  const shard: Shard | undefined = options.shard === undefined ? undefined : parseShard(options.shard);
  const dir = resolve(options.run);
  const run = await openRun(dir, { create: true, ...(shard ? { shard } : {}) });
  let backend: LanguageModel | undefined;
  try {
    const info = await run.readRunJson();
    const modelSpec = options.model ?? info?.backends?.generator;
    if (modelSpec === undefined) {
      throw new ConfigError("no model: pass --model (e.g. --model llama-cpp:./base.gguf) or set it in run.json", {
        field: "model",
      });
    }
    const constitution: Constitution = await loadConstitution(options.constitution ?? defaultConstitutionDir());
    if (info?.constitutionHash !== undefined && info.constitutionHash !== constitution.hash) {
      throw new ConfigError(
        `run.json was made with constitution ${info.constitutionHash} but ${constitution.dir} hashes to ${constitution.hash}; use the same constitution or a new run`,
        { path: run.runJsonPath },
      );
    }
    // Loaded here, not at the top: the registry pulls in node-llama-cpp, which every other command would pay for.
    const { createBackend } = await import("../../backends/registry.js");
    backend = await createBackend(modelSpec, onProgress ? { onProgress } : {});
    await run.writeRunJson({
      ...info,
      config: info?.config ?? {},
      constitutionHash: constitution.hash,
      backends: { ...info?.backends, generator: modelSpec },
    });
    const common = {
      backend,
      ...(options.seed === undefined ? {} : { seed: options.seed }),
      ...(onProgress ? { onProgress } : {}),
      ...(signal ? { signal } : {}),
    };
    const sampling = {
      ...(options.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
      ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
    };
    const storeOptions = shard ? { shard } : {};
    // What shapes the records (options that only say how much to do are left out).
    // Defaults resolved, so an option given with its default value counts as the same setting.
    const settingsOf = (defaults: object) => ({
      model: modelSpec,
      seed: options.seed ?? 42,
      sampling: { ...defaults, ...sampling },
    });
    const batchSize = options.batchSize === undefined ? {} : { batchSize: options.batchSize };
    if (stage === "self-instruct") {
      const store = await run.stage("self-instruct", storeOptions);
      await checkStageSettings(store, settingsOf(selfInstructSamplingDefaults));
      const result = await runSelfInstruct({
        ...common,
        ...batchSize,
        store,
        constitution,
        target: options.target ?? 100,
        sampling,
        ...(options.maxRoundsWithoutProgress === undefined
          ? {}
          : { maxRoundsWithoutProgress: options.maxRoundsWithoutProgress }),
      });
      return `self-instruct: kept ${result.counts.kept}, rejected ${result.counts.rejected} after ${result.counts.rounds} rounds (${result.stopReason})`;
    }
    if (stage === "red-team") {
      const topicStore = await run.stage("red-team-topics", storeOptions);
      const store = await run.stage("red-team", storeOptions);
      const redTeamSettings = {
        ...settingsOf(questionSamplingDefaults),
        topicSampling: topicSamplingDefaults,
        maxTopicsPerType: options.maxTopicsPerType ?? null,
      };
      await checkStageSettings(topicStore, redTeamSettings);
      await checkStageSettings(store, redTeamSettings);
      const result = await runRedTeam({
        ...common,
        ...batchSize,
        topicStore,
        store,
        constitution,
        questionSampling: sampling,
        ...(options.epochs === undefined ? {} : { epochs: options.epochs }),
        ...(options.maxTopicsPerType === undefined ? {} : { maxTopicsPerType: options.maxTopicsPerType }),
      });
      const topics = Object.values(result.counts.topics).reduce((sum, n) => sum + n, 0);
      return `red-team: ${topics} topics, kept ${result.counts.kept} questions, rejected ${result.counts.rejected}`;
    }
    const all = await readSelfAlignInputs(run.dir);
    const inputs = options.target === undefined ? all : all.slice(0, options.target);
    if (inputs.length === 0) {
      throw new ConfigError(
        `no prompts to answer in ${dir}: run "selfalign stage self-instruct" and/or "selfalign stage red-team" first`,
        { path: dir },
      );
    }
    const store = await run.stage("self-align", storeOptions);
    await checkStageSettings(store, settingsOf(selfAlignSamplingDefaults));
    const result = await runSelfAlign({
      ...common,
      ...(options.batchSize === undefined ? {} : { concurrency: options.batchSize }),
      store,
      constitution,
      inputs,
      sampling,
    });
    return `self-align: kept ${result.counts.kept}, rejected ${result.counts.rejected}`;
  } finally {
    await backend?.close();
    await run.close();
  }
}

export function registerStage(program: Command): void {
  const stage = program.command("stage").description("Run one stage of the pipeline into a run directory.");
  for (const name of generationStages) {
    stage
      .command(name)
      .description(
        {
          "self-instruct": "Stage 1a: invent task instructions from seed tasks (ROUGE-L deduplicated).",
          "red-team": "Stage 1b: brainstorm topics per red-team question type, then one question per (type, topic).",
          "self-align": "Stage 2: answer the stage-1 prompts with internal thoughts guided by the principles.",
        }[name],
      )
      .requiredOption("--run <dir>", "run directory (created when missing)")
      .option("--model <spec>", "backend, e.g. llama-cpp:./base.gguf or openai:http://host:8000/v1#name")
      .option("--shard <i/n>", "work on shard i of n (merge with `selfalign merge`)")
      .option(
        "--target <n>",
        "self-instruct: instructions to keep; self-align: answer only the first n prompts",
        positive("target"),
      )
      .option("--constitution <dir>", "constitution folder (default: the built-in one)")
      .option("--seed <n>", "base seed (default 42)", positive("seed", true))
      .option("--batch-size <n>", "prompts in flight (default: the backend's parallelism)", positive("batch-size"))
      .option("--epochs <n>", "red-team: topic brainstorming epochs (default 5)", positive("epochs"))
      .option("--max-topics-per-type <n>", "red-team: cap on topics per type", positive("max-topics-per-type"))
      .option("--max-tokens <n>", "max new tokens per completion (stage default otherwise)", positive("max-tokens"))
      .option("--temperature <t>", "sampling temperature (stage default otherwise)", positive("temperature", true))
      .option(
        "--max-rounds-without-progress <n>",
        "self-instruct: stop after this many rounds keep nothing (default 20)",
        positive("max-rounds-without-progress"),
      )
      .action(async (options: StageCommandOptions) => {
        const summary = await withProgress((onProgress, signal) => runStageCommand(name, options, onProgress, signal));
        process.stdout.write(`${summary}\n`);
      });
  }
}
