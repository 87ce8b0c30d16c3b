/**
 * `selfalign run`: every stage of the registry from one config, in order, then the report. A generic runner: it
 * names no stage. Every stage resumes where it stopped; a stage whose inputs and options are unchanged since it
 * finished is not run again, so re-running a finished run does nothing and says so. A stage whose record-shaping
 * settings changed starts afresh, its earlier folders kept aside (stage-settings.ts).
 */
import { join } from "node:path";
import { z } from "zod";
import type { BackendConfig } from "../backends/backend-config.js";
import { modelIdentity } from "../backends/model-spec.js";
import {
  type Constitution,
  checkConstitution,
  defaultConstitutionDir,
  formatConstitutionIssue,
  loadConstitution,
} from "../constitution/index.js";
import { ConfigError } from "../errors/index.js";
import { packageVersion } from "../package-root.js";
import type { ProgressEvent, ProgressListener } from "../progress/progress-event.js";
import { writeReport } from "../report/index.js";
import { readJsonFile } from "../run-store/json-file.js";
import {
  openRun,
  type Run,
  readManifest,
  readStageStatus,
  recordId,
  sumManifests,
  writeJsonAtomic,
} from "../run-store/index.js";
import { type LoadedPipelineConfig, type PipelineConfig, resolveConfigPath, runDirOf } from "./pipeline-config.js";
import { createStageContext, expandInstances, mainFolder, ModelPool, type StageInstance } from "./stage-context.js";
import { RunBudget, type TokenPrice } from "./run-budget.js";
import { baseModelRoles, isGroup } from "./stage-definition.js";
import { resolvePipelineModels } from "./resolve-models.js";
import { defaultRegistry, roundFolderName, type StageRegistry } from "./stage-registry.js";
import {
  type FolderSwitch,
  labelStageFolders,
  readFolderSettings,
  settingsKey,
  stageSettings,
  switchStageFolders,
} from "./stage-settings.js";

export interface RunPipelineOptions {
  loaded: LoadedPipelineConfig;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface PipelineStageSummary extends FolderSwitch {
  /** The stage instance: its name, or `<stage>-round-<n>` inside a repeated group. */
  stage: string;
  /** "stopped": a round its group's early-stop rule did not run. */
  status: "ran" | "skipped" | "up-to-date" | "stopped";
  kept?: number;
  rejected?: number;
  byFilter?: Record<string, number>;
  adapter?: string;
  /** The stage's own one-line summary (stages that ran). */
  summary?: string;
}

export interface RunPipelineResult {
  runDir: string;
  /** True when every stage was already finished with the same inputs and options: nothing ran. */
  alreadyFinished: boolean;
  stages: PipelineStageSummary[];
  usage: { promptTokens: number; completionTokens: number };
  /** Adapters by the stage that trained them. */
  adapters: Record<string, string>;
  /** The adapter of the last training stage. */
  finalAdapter?: string;
  /** Things the user must know, e.g. a stage that kept no records. */
  warnings: string[];
  reportPath?: string;
}

/** <run>/pipeline.json: which stage instance finished with which fingerprint of its inputs and options. */
interface PipelineState {
  stages: Record<string, { fingerprint: string; finishedAt: string }>;
}

const hash = (value: unknown) => recordId("pipeline", value);

/** Everything that can be checked without doing work: constitution, model files, trainer inputs. */
export interface PreparedPipeline {
  config: PipelineConfig;
  registry: StageRegistry;
  instances: StageInstance[];
  runDir: string;
  constitution: Constitution;
  /** The run's model, resolved (an hf: model downloaded). */
  generator: BackendConfig;
  /** GGUF the trainers (and a default teacher) load. */
  trainBase?: string;
  /** `trainer: hf`: the Hugging Face form of the base (a folder, resolved, or a hub id). */
  hfBase?: string;
}

const uses = (instance: StageInstance, ...roles: string[]) =>
  instance.definition.models.some((role) => roles.includes(role));

/** Validate the config against the world before any stage runs; fails with one clear message. */
export async function preparePipeline(options: RunPipelineOptions): Promise<PreparedPipeline> {
  const { loaded, onProgress, signal } = options;
  const { config } = loaded;
  const registry = loaded.registry ?? defaultRegistry;
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
  const instances = expandInstances(registry, config.stages);
  const training = instances.filter((instance) => !instance.skip && uses(instance, "trainer"));
  const { generator, trainBase } = await resolvePipelineModels(loaded, {
    training: [...new Set(training.map((instance) => instance.definition.name))],
    loadsBase: instances.some((instance) => !instance.skip && uses(instance, ...baseModelRoles)),
    ...(onProgress ? { onProgress } : {}),
    ...(signal ? { signal } : {}),
  });
  if (config.budget?.cost !== undefined && priceOf(generator) === undefined) {
    throw new ConfigError(
      "budget.cost needs the price of the run's model: give model as an object with pricePerMillionTokens: { prompt, completion } (a server model), or set budget.tokens instead",
      { ...(loaded.path ? { path: loaded.path } : {}), field: "budget.cost" },
    );
  }
  const { resolveHfBase } = await import("../training/hf/hf-trainer-options.js");
  const hfBase = config.hfBase === undefined ? undefined : resolveHfBase(config.hfBase, loaded.baseDir);
  return {
    config,
    registry,
    instances,
    ...(hfBase ? { hfBase } : {}),
    runDir: runDirOf(loaded),
    constitution,
    generator,
    ...(trainBase ? { trainBase } : {}),
  };
}

const pipelineStateSchema = z.object({
  stages: z.record(z.string(), z.object({ fingerprint: z.string(), finishedAt: z.string() })),
});

async function readState(runDir: string): Promise<PipelineState> {
  const value = await readJsonFile(join(runDir, "pipeline.json"));
  return value === undefined ? { stages: {} } : pipelineStateSchema.parse(value);
}

/** Group options that shape records (its amount options, such as `rounds`, left out). */
function shapingGroupOptions(prepared: PreparedPipeline, instance: StageInstance): Record<string, unknown> | undefined {
  const round = instance.round;
  if (!round) return undefined;
  const group = prepared.registry.find((entry) => entry.name === round.group);
  const amounts = group && isGroup(group) ? group.amountOptions : [];
  return Object.fromEntries(Object.entries(round.options).filter(([name]) => !amounts.includes(name)));
}

/** The price per million tokens of a server model, when its config gives one. */
export function priceOf(config: BackendConfig): TokenPrice | undefined {
  return config.type === "llama-cpp" ? undefined : config.pricePerMillionTokens;
}

/** The config without what only prices it (changing a price re-runs nothing). */
function withoutPrice(config: BackendConfig): BackendConfig {
  if (config.type === "llama-cpp" || config.pricePerMillionTokens === undefined) return config;
  const { pricePerMillionTokens: _price, ...rest } = config;
  return rest;
}

/** What every folder of the run has paid for so far (merged folders, else their shards), from the usage ledgers. */
async function spentSoFar(runDir: string, instances: readonly StageInstance[]) {
  const spent = { promptTokens: 0, completionTokens: 0 };
  for (const instance of instances) {
    for (const folder of instance.folders.values()) {
      const { parts } = await readStageStatus(runDir, folder);
      const counted = parts.some((part) => part.shard === undefined) ? parts.filter((part) => !part.shard) : parts;
      for (const part of counted) {
        spent.promptTokens += part.manifest.usage.promptTokens;
        spent.completionTokens += part.manifest.usage.completionTokens;
      }
    }
  }
  return spent;
}

/** The checks of prompt lengths and cutoffLen against the models' contexts (measure-stages.ts), before any work. */
async function checkLengths(
  loaded: LoadedPipelineConfig,
  prepared: PreparedPipeline,
  onProgress?: ProgressListener,
): Promise<void> {
  const { checkCutoffLengths, checkPromptLengths, measureStages, openTokenCounter } = await import(
    "./measure-stages.js"
  );
  await checkCutoffLengths(loaded, prepared);
  if (!prepared.instances.some((instance) => !instance.skip && instance.definition.estimate)) return;
  const counter = await openTokenCounter(prepared.generator);
  try {
    const warnings = checkPromptLengths(loaded, await measureStages(prepared, counter), counter.contextSize);
    for (const text of warnings) onProgress?.({ type: "message", level: "warn", text });
  } finally {
    await counter.close();
  }
}

export async function runPipeline(options: RunPipelineOptions): Promise<RunPipelineResult> {
  const prepared = await preparePipeline(options);
  await checkLengths(options.loaded, prepared, options.onProgress);
  const { config, runDir, instances } = prepared;
  const { onProgress } = options;
  const budget = config.budget
    ? new RunBudget(config.budget, await spentSoFar(runDir, instances), priceOf(prepared.generator))
    : undefined;
  const run = await openRun(runDir, { create: true });
  if (budget) run.onUsage = (usage) => budget.add(usage);
  const signal = budget
    ? options.signal
      ? AbortSignal.any([options.signal, budget.signal])
      : budget.signal
    : options.signal;
  try {
    return await runStages(options, prepared, run, budget, signal, onProgress);
  } catch (error) {
    // Stopped by the budget: say so (the stage saw an ordinary abort).
    if (budget?.signal.aborted && !options.signal?.aborted) throw budget.signal.reason;
    throw error;
  }
}

async function runStages(
  options: RunPipelineOptions,
  prepared: PreparedPipeline,
  run: Run,
  budget: RunBudget | undefined,
  signal: AbortSignal | undefined,
  onProgress: ProgressListener | undefined,
): Promise<RunPipelineResult> {
  const { config, runDir, constitution, instances } = prepared;
  const result: RunPipelineResult = {
    runDir,
    alreadyFinished: true,
    stages: [],
    usage: { promptTokens: 0, completionTokens: 0 },
    adapters: {},
    warnings: [],
  };
  // Warnings of the stage that is running (its models' too) are kept in its manifest.
  let stageWarnings: Set<string> | undefined;
  const dispatch: ProgressListener = (event: ProgressEvent) => {
    if (event.type === "message" && event.level === "warn") stageWarnings?.add(event.text);
    onProgress?.(event);
  };
  const pool = new ModelPool(dispatch, budget ? (model) => budget.wrap(model) : undefined);
  const byName = new Map(instances.map((instance) => [instance.name, instance]));
  const generatorIdentity = modelIdentity(prepared.generator);
  try {
    await run.writeRunJson({
      config,
      constitutionHash: constitution.hash,
      backends: {
        generator: generatorIdentity,
        ...(prepared.trainBase ? { trainBase: prepared.trainBase } : {}),
      },
      versions: { selfalign: packageVersion() },
    });
    const state = await readState(runDir);
    const fingerprints = new Map<string, string | undefined>();
    const keys = new Map<string, string | undefined>();
    /** Groups stopped early, with the reason. */
    const stopped = new Map<string, string>();
    for (const instance of instances) {
      const folders = [...instance.folders.values()];
      const groupStop = instance.skip ? undefined : await earlyStop(prepared, instance, stopped);
      if (groupStop !== undefined) {
        result.stages.push({ stage: instance.name, status: "stopped", summary: groupStop });
        continue;
      }
      if (instance.skip) {
        // Later stages depend on what a skipped stage's folders hold, not on its (unused) options.
        fingerprints.set(instance.name, state.stages[instance.name]?.fingerprint);
        keys.set(instance.name, (await readFolderSettings(join(runDir, mainFolder(instance))))?.key);
        // A skipped group is one line, not one per member and round.
        const round = instance.round;
        if (!round) result.stages.push({ stage: instance.name, status: "skipped" });
        else if (!result.stages.some((summary) => summary.stage === round.group))
          result.stages.push({ stage: round.group, status: "skipped" });
        continue;
      }
      const settings = stageSettings(instance, {
        model: uses(instance, "generator") ? generatorIdentity : undefined,
        trainBase: uses(instance, ...baseModelRoles) ? prepared.trainBase : undefined,
        group: shapingGroupOptions(prepared, instance),
        seed: config.seed,
        constitution: constitution.hash,
        upstream: instance.upstream.map((name) => keys.get(name) ?? null),
      });
      const key = settingsKey(settings);
      keys.set(instance.name, key);
      // The fingerprint adds what only decides how much is done or what is eligible (amounts, the context size):
      // with another one the stage runs again in the same folders.
      const fingerprint = hash({
        key,
        options: instance.options,
        generator: uses(instance, "generator") ? withoutPrice(prepared.generator) : null,
        upstream: instance.upstream.map((name) => fingerprints.get(name) ?? null),
      });
      fingerprints.set(instance.name, fingerprint);
      if (state.stages[instance.name]?.fingerprint === fingerprint) {
        await labelStageFolders(runDir, folders, settings);
        result.stages.push({ stage: instance.name, status: "up-to-date", ...(await folderCounts(runDir, instance)) });
        continue;
      }
      result.alreadyFinished = false;
      const switched = await switchStageFolders(runDir, instance.name, folders, settings);
      if (state.stages[instance.name] !== undefined) {
        // Finished before with other inputs or options. Forget the old fingerprint first, so an interruption of the
        // new run resumes the new work.
        delete state.stages[instance.name];
        await writeJsonAtomic(join(runDir, "pipeline.json"), state);
      }
      // A stage without the generator role (training) gets the memory the engines held.
      if (!uses(instance, "generator")) await pool.close();
      stageWarnings = new Set();
      const context = createStageContext({
        instance,
        instances: byName,
        registry: prepared.registry,
        run,
        constitution,
        seed: config.seed,
        generator: prepared.generator,
        ...(prepared.trainBase ? { trainBase: prepared.trainBase } : {}),
        ...(prepared.hfBase ? { hfBase: prepared.hfBase } : {}),
        engine: { seed: config.seed, ...config.engine },
        resolvePath: (path) => resolveConfigPath(options.loaded, path),
        pool,
        ...(options.loaded.path ? { command: `selfalign run ${options.loaded.path}` } : {}),
        onProgress: dispatch,
        ...(signal ? { signal } : {}),
      });
      let outcome: Awaited<ReturnType<typeof instance.definition.run>>;
      try {
        outcome = await instance.definition.run(context);
      } finally {
        await recordWarnings(run, mainFolder(instance), [...stageWarnings]);
        stageWarnings = undefined;
      }
      if (config.datasets) await exportDatasets(runDir, instance, options.loaded.path);
      result.usage.promptTokens += outcome.usage.promptTokens;
      result.usage.completionTokens += outcome.usage.completionTokens;
      const counts = await folderCounts(runDir, instance);
      result.stages.push({
        stage: instance.name,
        status: "ran",
        ...counts,
        ...(outcome.adapter ? { adapter: outcome.adapter } : {}),
        summary: outcome.summary,
        ...switched,
      });
      state.stages[instance.name] = { fingerprint, finishedAt: new Date().toISOString() };
      await writeJsonAtomic(join(runDir, "pipeline.json"), state);
    }
    for (const summary of result.stages) {
      if (summary.adapter) {
        result.adapters[summary.stage] = summary.adapter;
        result.finalAdapter = summary.adapter;
      }
      if (summary.status !== "skipped" && summary.status !== "stopped" && summary.kept === 0) {
        // Name the stages that went on without its records, and the adapters trained so.
        const ran = new Set(result.stages.filter((one) => one.status === "ran").map((one) => one.stage));
        const after = instances.filter((one) => ran.has(one.name) && one.upstream.includes(summary.stage));
        const trained = after.filter((one) => uses(one, "trainer")).map((one) => one.name);
        const rejected = summary.rejected
          ? ` (all ${summary.rejected} were rejected; see 'selfalign status ${runDir}')`
          : "";
        const later =
          after.length > 0
            ? `${after.map((one) => one.name).join(", ")} ran without anything from it`
            : "later stages had nothing from it to work on";
        const adapters =
          trained.length > 0 ? `; the adapter of ${trained.join(" and ")} was trained without its records` : "";
        result.warnings.push(`${summary.stage} KEPT NO RECORDS${rejected}: ${later}${adapters}`);
      }
    }
  } finally {
    await pool.close();
    await run.close();
  }
  if (config.report) result.reportPath = (await writeReport({ runDir, registry: prepared.registry })).path;
  return result;
}

/**
 * Why `instance` is not run because its group stopped early (asked once per group, at the first member of each round
 * after the first), or undefined.
 */
async function earlyStop(
  prepared: PreparedPipeline,
  instance: StageInstance,
  stopped: Map<string, string>,
): Promise<string | undefined> {
  const round = instance.round;
  if (!round) return undefined;
  const already = stopped.get(round.group);
  if (already !== undefined) return already;
  const group = prepared.registry.find((entry) => entry.name === round.group);
  if (!group || !isGroup(group) || !group.stopBefore || round.index === 1) return undefined;
  if (group.stages[0] !== instance.definition) return undefined;
  const reason = await group.stopBefore(round.index, {
    runDir: prepared.runDir,
    options: round.options,
    manifest: async (stage, index) => {
      const target = prepared.instances.find((one) => one.name === roundFolderName(stage, index));
      return target ? readManifest(join(prepared.runDir, mainFolder(target), "manifest.json")) : undefined;
    },
  });
  if (reason !== undefined) stopped.set(round.group, reason);
  return reason;
}

/** Each folder's kept records as a dataset (Parquet + card) under <run>/exports/<folder>/. */
async function exportDatasets(runDir: string, instance: StageInstance, configPath: string | undefined) {
  const { exportStage } = await import("../data/export-stage.js");
  for (const folder of instance.folders.values()) {
    const { parts } = await readStageStatus(runDir, folder);
    if (!parts.some((part) => part.manifest.counts.kept > 0)) continue;
    await exportStage(runDir, folder, configPath ? { command: `selfalign run ${configPath}` } : {});
  }
}

/** Keep the warnings a stage run raised in its main folder's manifest (deduplicated, newest last). */
async function recordWarnings(run: Run, folder: string, warnings: string[]) {
  if (warnings.length === 0) return;
  const store = await run.stage(folder);
  const previous = Array.isArray(store.manifest.extra.warnings) ? (store.manifest.extra.warnings as string[]) : [];
  store.manifest.extra.warnings = [...new Set([...previous, ...warnings])].slice(-50);
  await store.saveManifest();
}

async function folderCounts(
  runDir: string,
  instance: StageInstance,
): Promise<Pick<PipelineStageSummary, "kept" | "rejected" | "byFilter" | "adapter">> {
  const folder = mainFolder(instance);
  // The merged folder when there is one (it holds the shards' records), else the shards summed.
  const { parts } = await readStageStatus(runDir, folder);
  const counted = parts.some((part) => part.shard === undefined) ? parts.filter((part) => !part.shard) : parts;
  const total = sumManifests(
    folder,
    counted.map((part) => part.manifest),
  );
  const adapter = (await readManifest(join(runDir, folder, "manifest.json")))?.extra.adapter;
  return {
    kept: total.counts.kept,
    rejected: total.counts.rejected,
    byFilter: total.counts.byFilter,
    ...(typeof adapter === "string" ? { adapter } : {}),
  };
}
