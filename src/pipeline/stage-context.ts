/**
 * What `selfalign run` and `selfalign stage` hand a stage: its instance (a definition, possibly in a round, with its
 * real folder names), the models it asks for by role (created once, shared, closed together), upstream records
 * validated by their stage's schemas, and the trainer. One wiring for both commands.
 */
import { join, resolve } from "node:path";
import type { BackendConfig } from "../backends/backend-config.js";
import type { LanguageModel } from "../backends/language-model.js";
import { type ModelSpec, resolveModelSpec } from "../backends/model-spec.js";
import type { Constitution } from "../constitution/index.js";
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { canonicalJson, readManifest, type Run, type Shard } from "../run-store/index.js";
import { readStageRecords } from "../stages/shared/stage-records.js";
import type { Trainer, TrainOptions } from "../training/trainer.js";
import { isGroup, type RoundInfo, type StageContext, type StageDefinition } from "./stage-definition.js";
import { roundFolderName, type StageRegistry } from "./stage-registry.js";
import type { TrainConfig } from "./train-config.js";

/** A definition as it runs in one pipeline: with its round (inside a repeated group) and real folder names. */
export interface StageInstance {
  definition: StageDefinition;
  /** Unique in the pipeline: the stage name, or `<stage>-round-<n>`. */
  name: string;
  /** Folder names of the definition -> the folders this instance writes. */
  folders: ReadonlyMap<string, string>;
  /** Options with defaults applied (no `skip`). */
  options: Record<string, unknown>;
  skip: boolean;
  round?: RoundInfo;
  /** Names of the instances it reads. */
  upstream: string[];
}

/** The instance's main folder (its first), where its counts and adapter are recorded. */
export const mainFolder = (instance: StageInstance): string => instance.folders.values().next().value!;

const withoutSkip = (options: Record<string, unknown>) => {
  const { skip: _skip, ...rest } = options;
  return rest;
};

/**
 * The registry's stages as instances of this config, in run order: a group with `rounds: N` gives its members once
 * per round; a member reads the members of its own round, and every member of round r > 1 also depends on the stage
 * that trained round r - 1's adapter.
 */
export function expandInstances(
  registry: StageRegistry,
  stagesConfig: Record<string, Record<string, unknown>>,
): StageInstance[] {
  const instances: StageInstance[] = [];
  const topLevel = new Map<string, string>();
  for (const entry of registry) {
    const config = stagesConfig[entry.name] ?? {};
    if (!isGroup(entry)) {
      instances.push({
        definition: entry,
        name: entry.name,
        folders: new Map(entry.folders.map((folder) => [folder.name, folder.name])),
        options: withoutSkip(config),
        skip: config.skip === true,
        upstream: entry.upstream.map((stage) => topLevel.get(stage) ?? stage),
      });
      topLevel.set(entry.name, entry.name);
      continue;
    }
    const members = new Set(entry.stages.map((stage) => stage.name));
    const groupOptions = Object.fromEntries(Object.entries(withoutSkip(config)).filter(([name]) => !members.has(name)));
    const rounds = Number(groupOptions.rounds ?? 1);
    for (let index = 1; index <= rounds; index++) {
      const round: RoundInfo = { group: entry.name, index, count: rounds, options: groupOptions };
      for (const member of entry.stages) {
        const named = (stage: string) =>
          members.has(stage) ? roundFolderName(stage, index) : (topLevel.get(stage) ?? stage);
        instances.push({
          definition: member,
          name: roundFolderName(member.name, index),
          folders: new Map(member.folders.map((folder) => [folder.name, roundFolderName(folder.name, index)])),
          options: (config[member.name] as Record<string, unknown> | undefined) ?? {},
          skip: config.skip === true,
          round,
          upstream: [
            ...member.upstream.map(named),
            ...(index > 1 ? [roundFolderName(entry.adapterFrom, index - 1)] : []),
          ],
        });
      }
    }
  }
  return instances;
}

/**
 * The trainer a stage's `train` options name, and the options to pass it. `hf` trains `hfBase` (the Hugging Face
 * form of the base) on GPUs and converts the adapter to a GGUF LoRA for the stage's GGUF base.
 */
export async function trainerFor(
  train: TrainConfig,
  hfBase: string | undefined,
): Promise<{ trainer: Trainer; options: TrainOptions }> {
  const { trainer: kind, hf, ...options } = train;
  if (kind !== "hf") {
    return { trainer: new (await import("../training/embedded/embedded-trainer.js")).EmbeddedTrainer(), options };
  }
  if (hfBase === undefined) {
    throw new ConfigError("trainer hf needs hfBase, the base model in Hugging Face form (a folder or hub id)", {
      field: "hfBase",
    });
  }
  return { trainer: new (await import("../training/hf/index.js")).HfGgufTrainer({ ...hf, hfBase }), options };
}

/** Models created once per run and shared by every stage that asks for the same one. */
export class ModelPool {
  private readonly models = new Map<string, Promise<LanguageModel>>();

  constructor(
    private readonly onProgress?: ProgressListener,
    /** Applied to every model created (the run's budget gate). */
    private readonly wrap?: (model: LanguageModel) => LanguageModel,
  ) {}

  get(config: BackendConfig): Promise<LanguageModel> {
    const key = canonicalJson(config);
    let model = this.models.get(key);
    if (!model) {
      model = import("../backends/registry.js")
        .then(({ createBackend }) => createBackend(config, this.onProgress ? { onProgress: this.onProgress } : {}))
        .then((created) => (this.wrap ? this.wrap(created) : created));
      // A failed creation is not cached: the next call tries again.
      model.catch(() => this.models.delete(key));
      this.models.set(key, model);
    }
    return model;
  }

  async close(): Promise<void> {
    const models = [...this.models.values()];
    this.models.clear();
    for (const model of models) await (await model.catch(() => undefined))?.close();
  }
}

export interface StageContextParams {
  instance: StageInstance;
  /** Every instance of the pipeline by name (upstream and earlier rounds are looked up here). */
  instances: ReadonlyMap<string, StageInstance>;
  registry: StageRegistry;
  run: Run;
  shard?: Shard;
  constitution: Constitution;
  seed: number;
  /** The run's model, resolved; undefined when the caller has none (a training-only stage). */
  generator?: BackendConfig;
  trainBase?: string;
  /** `trainer: hf`: the base in Hugging Face form (resolved folder or hub id). */
  hfBase?: string;
  /** Embedded-engine defaults for models named by stages (the config's `engine:`). */
  engine?: Record<string, unknown>;
  resolvePath?: (path: string) => string;
  pool: ModelPool;
  /** The command that made the run (for dataset cards). */
  command?: string;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

async function adapterIn(runDir: string, folder: string): Promise<string | undefined> {
  const adapter = (await readManifest(join(runDir, folder, "manifest.json")))?.extra.adapter;
  return typeof adapter === "string" ? adapter : undefined;
}

export function createStageContext(params: StageContextParams): StageContext<Record<string, unknown>> {
  const { instance, instances, run, pool } = params;
  // Training progress says which stage trains.
  const forward = params.onProgress;
  const onProgress: ProgressListener | undefined = forward
    ? (event) =>
        forward(
          (event.type === "train-step" || event.type === "train-eval") && event.stage === undefined
            ? { ...event, stage: instance.name }
            : event,
        )
    : undefined;
  const definition = instance.definition;
  const runDir = run.dir;
  /** The instance that runs `stage` as seen from this one: the same round's member, else the top-level stage. */
  const instanceOf = (stage: string, round = instance.round?.index): StageInstance => {
    const name =
      round !== undefined && instances.has(roundFolderName(stage, round)) ? roundFolderName(stage, round) : stage;
    const found = instances.get(name);
    if (!found)
      throw new ConfigError(`stage "${definition.name}" reads stage "${stage}", which this pipeline does not have`);
    return found;
  };
  const folderOf = (target: StageInstance, folder?: string) => {
    const spec =
      folder === undefined ? target.definition.folders[0]! : target.definition.folders.find((f) => f.name === folder);
    if (!spec) throw new ConfigError(`stage "${target.definition.name}" has no folder "${folder}"`);
    return { spec, name: target.folders.get(spec.name)! };
  };
  const readFolder = async <T>(target: StageInstance, folder?: string) => {
    const { spec, name } = folderOf(target, folder);
    return (await readStageRecords(runDir, name, spec.kept)) as T[];
  };
  const context: StageContext<Record<string, unknown>> = {
    definition,
    options: instance.options,
    run,
    runDir,
    ...(params.shard ? { shard: params.shard } : {}),
    constitution: params.constitution,
    seed: params.seed,
    ...(instance.round ? { round: instance.round } : {}),
    ...(params.trainBase ? { trainBase: params.trainBase } : {}),
    store: async (folder) => {
      const { spec, name } = folderOf(instance, folder);
      return run.stage(name, {
        ...(params.shard ? { shard: params.shard } : {}),
        schemas: { kept: spec.kept, rejected: spec.rejected },
      });
    },
    upstreamRecords: (stage, folder) => readFolder(instanceOf(stage), folder),
    roundRecords: (stage, round, folder) => readFolder(instanceOf(stage, round), folder),
    adapterOf: async (stage, round) => adapterIn(runDir, folderOf(instanceOf(stage, round)).name),
    manifestExtra: async (stage, round) =>
      (await readManifest(join(runDir, folderOf(instanceOf(stage, round)).name, "manifest.json")))?.extra,
    model: async (_role, options = {}) => {
      const generator = params.generator;
      if (!generator)
        throw new ConfigError(`stage "${definition.name}" needs a model: pass --model or set it in run.json`, {
          field: "model",
        });
      const round = instance.round;
      if (options.adapter !== undefined) {
        if (generator.type !== "llama-cpp") {
          throw new ConfigError(
            `stage "${definition.name}" loads the adapter ${options.adapter} into the run's model, which needs an embedded (GGUF) model; the run's model is a server`,
            { field: "model" },
          );
        }
        return pool.get({ ...generator, lora: [...(generator.lora ?? []), { path: options.adapter }] });
      }
      if (options.base || !round || round.index === 1) return pool.get(generator);
      const group = params.registry.find((entry) => entry.name === round.group);
      const from = group && isGroup(group) ? group.adapterFrom : undefined;
      const adapter = from ? await adapterIn(runDir, roundFolderName(from, round.index - 1)) : undefined;
      if (!adapter) {
        throw new ConfigError(
          `round ${round.index} of ${round.group} needs the adapter of round ${round.index - 1}, which has not been trained (run the earlier round first)`,
          { path: runDir },
        );
      }
      if (generator.type !== "llama-cpp") {
        throw new ConfigError(
          `round ${round.index} of ${round.group} generates with the base model plus round ${round.index - 1}'s adapter, which needs an embedded (GGUF) model; the run's model is a server`,
          { field: "model" },
        );
      }
      return pool.get({ ...generator, lora: [...(generator.lora ?? []), { path: adapter }] });
    },
    languageModel: async (spec: ModelSpec, options = {}) => {
      const config = await resolveModelSpec(spec, {
        ...(params.resolvePath ? { resolvePath: params.resolvePath } : {}),
        ...(params.engine ? { engine: params.engine } : {}),
        ...(onProgress ? { onProgress } : {}),
        ...(params.signal ? { signal: params.signal } : {}),
        field: `stages.${definition.name}`,
      });
      const lora = options.lora ?? [];
      if (lora.length === 0) return pool.get(config);
      if (config.type !== "llama-cpp") {
        throw new ConfigError(`adapters can only be loaded into an embedded (GGUF) model, not ${config.model}`, {
          field: `stages.${definition.name}`,
        });
      }
      return pool.get({ ...config, lora: [...(config.lora ?? []), ...lora.map((path) => ({ path }))] });
    },
    resolvePath: (path) => (params.resolvePath ? params.resolvePath(path) : resolve(path)),
    trainer: async (train: TrainConfig) => {
      if (!params.trainBase) {
        throw new ConfigError(
          `stage "${definition.name}" trains on a local GGUF, but none is known: set \`trainBase\` (or a GGUF \`model\`) in the config, or pass --train-base`,
          { field: "trainBase" },
        );
      }
      return { ...(await trainerFor(train, params.hfBase)), base: params.trainBase };
    },
    ...(params.command ? { command: params.command } : {}),
    releaseModels: () => pool.close(),
    ...(onProgress ? { onProgress } : {}),
    ...(params.signal ? { signal: params.signal } : {}),
  };
  return context;
}
