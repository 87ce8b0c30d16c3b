/**
 * `selfalign run`: the whole SELF-ALIGN pipeline from one config — self-instruct, red-team, self-align, engrave,
 * verbose-clone, then the report. Every stage resumes where it stopped; a stage whose inputs and options are unchanged
 * since it finished is not run again, so re-running a finished run does nothing and says so.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import type { LanguageModel } from "../backends/language-model.js";
import { createLlamaCppBackend } from "../backends/llama-cpp/index.js";
import { createBackend } from "../backends/registry.js";
import {
  type Constitution,
  checkConstitution,
  defaultConstitutionDir,
  formatConstitutionIssue,
  loadConstitution,
} from "../constitution/index.js";
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { packageVersion } from "../package-root.js";
import { writeReport } from "../report/index.js";
import { readJsonFile } from "../run-store/json-file.js";
import {
  openRun,
  type Run,
  readManifest,
  readStageAcrossShards,
  recordId,
  writeJsonAtomic,
} from "../run-store/index.js";
import type { AnswerRecord } from "../stages/engrave/build-sft.js";
import { engraveStage, runEngrave, sftFiles } from "../stages/engrave/run.js";
import { redTeamStage, redTeamTopicsStage, runRedTeam } from "../stages/red-team/run.js";
import { readSelfAlignInputs } from "../stages/self-align/inputs.js";
import { runSelfAlign, type SelfAlignRecord, selfAlignStage } from "../stages/self-align/run.js";
import { readStageRecords } from "../stages/shared/stage-records.js";
import { runSelfInstruct, selfInstructStage } from "../stages/self-instruct/run.js";
import { runVerboseClone, verboseCloneStage } from "../stages/verbose-clone/run.js";
import { EmbeddedTrainer } from "../training/embedded/embedded-trainer.js";
import { HfTrainer } from "../training/hf/index.js";
import type { Trainer, TrainOptions } from "../training/trainer.js";
import {
  labelStageFolders,
  readKeyFile,
  settingsKeyFile,
  switchStageFolders,
  trainKeyFile,
  writeKeyFile,
} from "./stage-folders.js";
import {
  type LoadedPipelineConfig,
  type PipelineConfig,
  type PipelineStageName,
  pipelineStageNames,
  resolveConfigPath,
  runDirOf,
  type TrainConfig,
} from "./pipeline-config.js";
import { resolvePipelineModels } from "./resolve-models.js";

export interface RunPipelineOptions {
  loaded: LoadedPipelineConfig;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface PipelineStageSummary {
  stage: PipelineStageName;
  status: "ran" | "skipped" | "up-to-date";
  /** The stage's folders held records made with other settings: where they were moved (kept, not used). */
  movedAside?: string;
  /** Records made earlier with the current settings were moved back from here and reused. */
  restoredFrom?: string;
  kept?: number;
  rejected?: number;
  byFilter?: Record<string, number>;
  adapter?: string;
}

export interface RunPipelineResult {
  runDir: string;
  /** True when every stage was already finished with the same inputs and options: nothing ran. */
  alreadyFinished: boolean;
  stages: PipelineStageSummary[];
  usage: { promptTokens: number; completionTokens: number };
  adapters: { engrave?: string; final?: string };
  reportPath?: string;
}

/** <run>/pipeline.json: which stage finished with which fingerprint of its inputs and options. */
interface PipelineState {
  stages: Partial<Record<PipelineStageName, { fingerprint: string; finishedAt: string }>>;
}

/** The folders of a pipeline stage. */
const stageFolders: Record<PipelineStageName, string[]> = {
  "self-instruct": [selfInstructStage],
  "red-team": [redTeamTopicsStage, redTeamStage],
  "self-align": [selfAlignStage],
  engrave: [engraveStage],
  "verbose-clone": [verboseCloneStage, `${verboseCloneStage}-sft`],
};

/**
 * Options that only say how much to do: changing them keeps the records made so far (a larger `target` continues
 * where the stage stopped). Every other option shapes the records, so records made with another value are not reused.
 */
const amountOptions: Record<PipelineStageName, string[]> = {
  "self-instruct": ["skip", "target", "maxRounds", "maxRoundsWithoutProgress"],
  "red-team": ["skip", "epochs"],
  "self-align": ["skip"],
  engrave: [],
  // Its answers are kept per prompt (maxPrompts) and its training restarts on its own when `train` changes.
  "verbose-clone": ["skip", "maxPrompts", "train"],
};

const hash = (value: unknown) => recordId("pipeline", value);

/** Everything that can be checked without doing work: constitution, model files, trainer inputs. */
export interface PreparedPipeline {
  config: PipelineConfig;
  runDir: string;
  constitution: Constitution;
  /** Local GGUF (downloaded if it was an hf: URI) or undefined when `model` is a server. */
  modelPath?: string;
  /** The backend spec when `model` is a server. */
  serverSpec?: string;
  /** GGUF the trainer and verbose-clone teacher load. */
  trainBase?: string;
}

function needsTraining(config: PipelineConfig): boolean {
  return !config.stages.engrave.skip || !config.stages["verbose-clone"].skip;
}

/** Validate the config against the world before any stage runs; fails with one clear message. */
export async function preparePipeline(options: RunPipelineOptions): Promise<PreparedPipeline> {
  const { loaded, onProgress, signal } = options;
  const { config } = loaded;
  const constitutionDir =
    config.constitution === "default" ? defaultConstitutionDir() : resolveConfigPath(loaded, config.constitution);
  const constitution = await loadConstitution(constitutionDir);
  const errors = checkConstitution(constitution).filter((issue) => issue.severity === "error");
  if (errors.length) {
    throw new ConfigError(
      `the constitution has ${errors.length} problem(s); fix them first ('selfalign constitution check ${constitutionDir}'):\n${errors.map(formatConstitutionIssue).join("\n")}`,
      { path: constitutionDir },
    );
  }
  const { modelPath, serverSpec, trainBase } = await resolvePipelineModels(loaded, {
    training: needsTraining(config),
    ...(onProgress ? { onProgress } : {}),
    ...(signal ? { signal } : {}),
  });
  return {
    config,
    runDir: runDirOf(loaded),
    constitution,
    ...(modelPath ? { modelPath } : {}),
    ...(serverSpec ? { serverSpec } : {}),
    ...(trainBase ? { trainBase } : {}),
  };
}

function trainerFor(config: TrainConfig): { trainer: Trainer; options: TrainOptions } {
  const { trainer, ...options } = config;
  return { trainer: trainer === "hf" ? new HfTrainer() : new EmbeddedTrainer(), options };
}

const pipelineStateSchema = z.object({
  stages: z.record(z.string(), z.object({ fingerprint: z.string(), finishedAt: z.string() })),
});

async function readState(runDir: string): Promise<PipelineState> {
  const value = await readJsonFile(join(runDir, "pipeline.json"));
  return value === undefined ? { stages: {} } : (pipelineStateSchema.parse(value) as PipelineState);
}

export async function runPipeline(options: RunPipelineOptions): Promise<RunPipelineResult> {
  const prepared = await preparePipeline(options);
  const { config, runDir, constitution } = prepared;
  const { onProgress, signal } = options;
  const run = await openRun(runDir, { create: true });
  const result: RunPipelineResult = {
    runDir,
    alreadyFinished: true,
    stages: [],
    usage: { promptTokens: 0, completionTokens: 0 },
    adapters: {},
  };
  let generator: LanguageModel | undefined;
  try {
    await run.writeRunJson({
      config,
      constitutionHash: constitution.hash,
      backends: {
        generator: prepared.serverSpec ?? `llama-cpp:${prepared.modelPath}`,
        ...(prepared.trainBase ? { trainBase: prepared.trainBase } : {}),
      },
      versions: { selfalign: packageVersion() },
    });
    const state = await readState(runDir);
    const fingerprints: Partial<Record<PipelineStageName, string>> = {};
    const keys: Partial<Record<PipelineStageName, string | undefined>> = {};
    const getGenerator = async () => {
      generator ??= prepared.serverSpec
        ? await createBackend(prepared.serverSpec, { ...(onProgress ? { onProgress } : {}) })
        : await createLlamaCppBackend({
            model: prepared.modelPath!,
            seed: config.seed,
            ...config.engine,
            ...(onProgress ? { onProgress } : {}),
          });
      return generator;
    };
    const closeGenerator = async () => {
      await generator?.close();
      generator = undefined;
    };

    const upstream: Record<PipelineStageName, PipelineStageName[]> = {
      "self-instruct": [],
      "red-team": [],
      "self-align": ["self-instruct", "red-team"],
      engrave: ["self-align"],
      "verbose-clone": ["self-instruct", "red-team", "engrave"],
    };
    for (const stage of pipelineStageNames) {
      const stageConfig = config.stages[stage];
      const folders = stageFolders[stage];
      if (stageConfig.skip) {
        // Later stages depend on what a skipped stage's folders hold, not on its (unused) options.
        fingerprints[stage] = state.stages[stage]?.fingerprint;
        keys[stage] = await readKeyFile(join(runDir, folders[0]!), settingsKeyFile);
        result.stages.push({ stage, status: "skipped" });
        continue;
      }
      fingerprints[stage] = hash({
        stage: stageConfig,
        model: config.model,
        trainBase: prepared.trainBase ?? null,
        seed: config.seed,
        constitution: constitution.hash,
        upstream: upstream[stage].map((name) => fingerprints[name] ?? null),
      });
      // The settings that shape this stage's records (upstream by their own keys: more prompts upstream only adds).
      const key =
        stage === engraveStage
          ? fingerprints[stage]
          : hash({
              stage: Object.fromEntries(
                Object.entries(stageConfig).filter(([option]) => !amountOptions[stage].includes(option)),
              ),
              model: config.model,
              trainBase: stage === verboseCloneStage ? (prepared.trainBase ?? null) : null,
              seed: config.seed,
              constitution: constitution.hash,
              upstream: upstream[stage].map((name) => keys[name] ?? null),
            });
      keys[stage] = key;
      if (state.stages[stage]?.fingerprint === fingerprints[stage]) {
        // Same fingerprint, same settings: label folders from before keys were kept.
        await labelStageFolders(runDir, folders, key);
        result.stages.push({ stage, status: "up-to-date", ...(await stageCounts(runDir, stage)) });
        continue;
      }
      result.alreadyFinished = false;
      const switched = await switchStageFolders(runDir, stage, folders, key);
      const finishedBefore = state.stages[stage] !== undefined;
      if (finishedBefore) {
        // Finished before with other inputs or options. Forget the old fingerprint first, so an interruption of the
        // new run resumes the new work.
        delete state.stages[stage];
        await writeJsonAtomic(join(runDir, "pipeline.json"), state);
      }
      if (stage === engraveStage || stage === verboseCloneStage) {
        // A training checkpoint made with other training settings or data is stale: train afresh. Engrave's folder
        // moves aside whenever its fingerprint changes; verbose-clone keeps its answers across training changes.
        const options = config.stages[verboseCloneStage];
        const trainKey =
          stage === engraveStage ? key : hash({ key, train: options.train, maxPrompts: options.maxPrompts ?? null });
        const folder = join(runDir, stage);
        const recorded = await readKeyFile(folder, trainKeyFile);
        if (recorded === undefined ? finishedBefore : recorded !== trainKey)
          await rm(join(sftFiles(folder).adapterDir, "checkpoint"), { recursive: true, force: true });
        await writeKeyFile(folder, trainKeyFile, trainKey);
      }
      const summary = await runStage(stage, {
        run,
        prepared,
        getGenerator,
        closeGenerator,
        result,
        ...(onProgress ? { onProgress } : {}),
        ...(signal ? { signal } : {}),
      });
      result.stages.push({ stage, status: "ran", ...(await stageCounts(runDir, stage)), ...summary, ...switched });
      state.stages[stage] = { fingerprint: fingerprints[stage]!, finishedAt: new Date().toISOString() };
      await writeJsonAtomic(join(runDir, "pipeline.json"), state);
    }
    for (const summary of result.stages) {
      if (summary.stage === "engrave" && summary.adapter) result.adapters.engrave = summary.adapter;
      if (summary.stage === "verbose-clone" && summary.adapter) result.adapters.final = summary.adapter;
    }
  } finally {
    await generator?.close();
    await run.close();
  }
  if (config.report) result.reportPath = (await writeReport({ runDir })).path;
  return result;
}

async function stageCounts(
  runDir: string,
  stage: PipelineStageName,
): Promise<Omit<PipelineStageSummary, "stage" | "status">> {
  const { records, rejected } = await readStageAcrossShards(runDir, stage);
  const byFilter: Record<string, number> = {};
  for (const record of rejected) byFilter[record.filter] = (byFilter[record.filter] ?? 0) + 1;
  // Only the training stages leave an adapter (recorded in their manifest).
  const adapter = stage === engraveStage || stage === verboseCloneStage ? await adapterOf(runDir, stage) : undefined;
  return { kept: records.length, rejected: rejected.length, byFilter, ...(adapter ? { adapter } : {}) };
}

async function adapterOf(runDir: string, stage: string): Promise<string | undefined> {
  const adapter = (await readManifest(join(runDir, stage, "manifest.json")))?.extra.adapter;
  return typeof adapter === "string" ? adapter : undefined;
}

interface StageContext {
  run: Run;
  prepared: PreparedPipeline;
  getGenerator: () => Promise<LanguageModel>;
  closeGenerator: () => Promise<void>;
  result: RunPipelineResult;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

async function runStage(stage: PipelineStageName, context: StageContext): Promise<Partial<PipelineStageSummary>> {
  const { run, prepared, result, onProgress, signal } = context;
  const { config, constitution, runDir } = prepared;
  const common = { ...(onProgress ? { onProgress } : {}), ...(signal ? { signal } : {}) };
  const addUsage = (usage: { promptTokens: number; completionTokens: number }) => {
    result.usage.promptTokens += usage.promptTokens;
    result.usage.completionTokens += usage.completionTokens;
  };
  switch (stage) {
    case "self-instruct": {
      // The config's stage options are named as the runner's options (unset ones take the runner's defaults).
      const { skip: _skip, ...options } = config.stages["self-instruct"];
      const out = await runSelfInstruct({
        backend: await context.getGenerator(),
        store: await run.stage(selfInstructStage),
        constitution,
        seed: config.seed,
        ...options,
        ...common,
      });
      addUsage(out.usage);
      return {};
    }
    case "red-team": {
      const { skip: _skip, ...options } = config.stages["red-team"];
      const out = await runRedTeam({
        backend: await context.getGenerator(),
        topicStore: await run.stage(redTeamTopicsStage),
        store: await run.stage(redTeamStage),
        constitution,
        seed: config.seed,
        ...options,
        ...common,
      });
      addUsage(out.usage);
      return {};
    }
    case "self-align": {
      const options = config.stages["self-align"];
      const out = await runSelfAlign({
        backend: await context.getGenerator(),
        store: await run.stage(selfAlignStage),
        constitution,
        inputs: await readSelfAlignInputs(runDir),
        seed: config.seed,
        sampling: options.sampling,
        ...(options.logitBias
          ? {
              logitBias: Object.fromEntries(
                Object.entries(options.logitBias).map(([token, bias]) => [Number(token), bias]),
              ),
            }
          : {}),
        ...common,
      });
      addUsage(out.usage);
      return {};
    }
    case "engrave": {
      await context.closeGenerator(); // free the engine's memory for training
      const options = config.stages.engrave;
      const records = await readStageRecords<SelfAlignRecord>(runDir, selfAlignStage);
      const answers: AnswerRecord[] = records.map((r) => ({
        id: r.id,
        instruction: r.instruction,
        input: r.input,
        output: r.output,
        ended: r.endedTurn,
      }));
      const { trainer, options: trainOptions } = trainerFor(options.train);
      const out = await runEngrave({
        store: await run.stage(engraveStage),
        answers,
        constitution,
        includeIdentity: options.includeIdentity,
        trainer,
        base: prepared.trainBase!,
        trainOptions: { seed: config.seed, ...trainOptions },
        ...common,
      });
      return { adapter: out.train.adapterPath };
    }
    case "verbose-clone": {
      await context.closeGenerator();
      const options = config.stages["verbose-clone"];
      const engraveAdapter = await adapterOf(runDir, engraveStage);
      if (!engraveAdapter) {
        throw new ConfigError(
          "verbose-clone needs the engraving adapter: run the engrave stage first (it is skipped or unfinished)",
          { path: join(runDir, engraveStage) },
        );
      }
      const teacher = await createLlamaCppBackend({
        model: prepared.trainBase!,
        lora: [{ path: engraveAdapter }],
        seed: config.seed,
        ...config.engine,
        ...(onProgress ? { onProgress } : {}),
      });
      try {
        const prompts = [
          ...(await readSelfAlignInputs(runDir)),
          ...constitution.assistant.identity.map((exchange, index) => ({
            id: recordId("identity-question", index),
            instruction: exchange.user,
          })),
        ].slice(0, options.maxPrompts);
        const { trainer, options: trainOptions } = trainerFor(options.train);
        const out = await runVerboseClone({
          teacher,
          store: await run.stage(verboseCloneStage),
          sftStore: await run.stage(`${verboseCloneStage}-sft`),
          prompts,
          constitution,
          trainer,
          base: prepared.trainBase!,
          trainOptions: { seed: config.seed, ...trainOptions },
          seed: config.seed,
          ...(options.sampling ? { sampling: options.sampling } : {}),
          ...common,
        });
        addUsage(out.usage);
        return { adapter: out.train.adapterPath };
      } finally {
        await teacher.close();
      }
    }
  }
}
