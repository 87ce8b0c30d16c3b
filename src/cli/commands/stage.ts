/**
 * `selfalign stage <name> --run <dir>`: run one stage of the registry into a run directory, resumable (run the same
 * command again after Ctrl+C) and shardable (`--shard i/n`). Its flags come from the stage's options schema; the
 * settings guard refuses to mix records of other settings in a folder.
 */
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { modelIdentity, resolveModelSpec } from "../../backends/model-spec.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import { createStageContext, expandInstances, mainFolder, ModelPool } from "../../pipeline/stage-context.js";
import { isGroup, type StageDefinition } from "../../pipeline/stage-definition.js";
import { allStages, defaultRegistry, findStage, type StageRegistry } from "../../pipeline/stage-registry.js";
import { readFolderSettings, refuseOtherSettings, stageSettings } from "../../pipeline/stage-settings.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { openRun, parseShard, type Shard, shardDirName } from "../../run-store/index.js";
import { readStageRecords } from "../../stages/shared/stage-records.js";
import { withProgress } from "../with-progress.js";
import { addSchemaFlags, schemaFlags, valuesFromFlags } from "../zod-flags.js";
import { describeZodIssues } from "../../config/zod-issues.js";
import { formatFieldPath } from "../../constitution/constitution-issue.js";

/** The flags every stage takes, besides its own options. */
export interface StageCommandOptions {
  run: string;
  model?: string;
  trainBase?: string;
  hfBase?: string;
  shard?: string;
  constitution?: string;
  seed?: number;
  /** The round of a repeated group's stage (1-based). */
  round?: number;
  /** The stage's own options as commander parsed them (camelCase flag names). */
  [option: string]: unknown;
}

function nonNegative(name: string, allowZero = false) {
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

/** The stage's options from the flags, through its schema (defaults applied; a bad value names its flag). */
function stageOptions(definition: StageDefinition, flags: Record<string, unknown>): Record<string, unknown> {
  const derived = schemaFlags(definition.options);
  const values = valuesFromFlags(flags, derived, definition.flagAliases);
  const parsed = definition.options.safeParse(values);
  if (parsed.success) return parsed.data as Record<string, unknown>;
  const [first] = describeZodIssues(parsed.error.issues, values, definition.options);
  const path = formatFieldPath(first!.path);
  const flag = derived.find((one) => path.startsWith(one.path.join(".")))?.flag;
  throw new ConfigError(`${flag ? `--${flag}: ` : ""}${first!.message}`, { field: path || definition.name });
}

/** Run one stage; used by the command and by tests. Returns a one-line summary. */
export async function runStageCommand(
  stage: string | StageDefinition,
  options: StageCommandOptions,
  onProgress?: ProgressListener,
  signal?: AbortSignal,
  registry: StageRegistry = defaultRegistry,
): Promise<string> {
  const definition = typeof stage === "string" ? findStage(registry, stage) : stage;
  if (!definition) {
    throw new ConfigError(
      `no stage "${String(stage)}"; the stages are: ${allStages(registry)
        .map((one) => one.name)
        .join(", ")}`,
      { field: "stage" },
    );
  }
  const parsedOptions = stageOptions(definition, options);
  const group = registry.find((entry) => isGroup(entry) && entry.stages.includes(definition));
  const round = group ? (options.round ?? 1) : undefined;
  const shard: Shard | undefined = options.shard === undefined ? undefined : parseShard(options.shard);
  const dir = resolve(options.run);
  const run = await openRun(dir, { create: true, ...(shard ? { shard } : {}) });
  const pool = new ModelPool(onProgress);
  try {
    const info = await run.readRunJson();
    const modelSpec = options.model ?? info?.backends?.generator;
    const needsModel = definition.models.includes("generator");
    if (needsModel && modelSpec === undefined) {
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
    const progress = { ...(onProgress ? { onProgress } : {}), ...(signal ? { signal } : {}) };
    const generator =
      modelSpec === undefined ? undefined : await resolveModelSpec(modelSpec, { field: "--model", ...progress });
    const trainBase = options.trainBase ?? info?.backends?.trainBase;
    const seed = options.seed ?? 42;

    // This stage as an instance of the default pipeline (in its round), the rest for upstream lookups.
    const instances = expandInstances(
      registry,
      group && round !== undefined ? { [group.name]: { rounds: round } } : {},
    );
    const name = round === undefined ? definition.name : `${definition.name}-round-${round}`;
    const instance = instances.find((one) => one.name === name);
    if (!instance) throw new ConfigError(`stage "${definition.name}" is not in this registry`, { field: "stage" });
    instance.options = parsedOptions;
    const byName = new Map(instances.map((one) => [one.name, one]));

    const needsInputs =
      typeof definition.needsUpstreamRecords === "function"
        ? definition.needsUpstreamRecords(parsedOptions)
        : definition.needsUpstreamRecords === true;
    if (needsInputs) {
      let inputs = 0;
      for (const upstream of instance.upstream) {
        const source = byName.get(upstream);
        if (source) inputs += (await readStageRecords(dir, mainFolder(source))).length;
      }
      if (inputs === 0) {
        throw new ConfigError(
          `nothing to work on in ${dir}: the stages ${definition.name} reads (${definition.upstream.join(", ")}) have no kept records; run ${definition.upstream.map((one) => `"selfalign stage ${one}"`).join(" and/or ")} first`,
          { path: dir },
        );
      }
    }
    const upstreamKeys = [];
    for (const upstream of instance.upstream) {
      const source = byName.get(upstream);
      upstreamKeys.push(source ? ((await readFolderSettings(join(dir, mainFolder(source))))?.key ?? null) : null);
    }
    const uses = (...roles: string[]) => definition.models.some((role) => roles.includes(role));
    const settings = stageSettings(instance, {
      model: uses("generator") && generator ? modelIdentity(generator) : undefined,
      trainBase: uses("trainer", "teacher") ? trainBase : undefined,
      group: round === undefined ? undefined : {},
      seed,
      constitution: constitution.hash,
      upstream: upstreamKeys,
    });
    for (const folder of instance.folders.values()) {
      const path = shard ? join(dir, folder, shardDirName(shard)) : join(dir, folder);
      await refuseOtherSettings(path, shard ? `${folder} (shard ${options.shard})` : folder, settings);
    }
    await run.writeRunJson({
      ...info,
      config: info?.config ?? {},
      constitutionHash: constitution.hash,
      backends: {
        ...info?.backends,
        ...(generator ? { generator: modelIdentity(generator) } : {}),
        ...(trainBase ? { trainBase } : {}),
      },
    });
    const context = createStageContext({
      instance,
      instances: byName,
      registry,
      run,
      ...(shard ? { shard } : {}),
      constitution,
      seed,
      ...(generator ? { generator } : {}),
      ...(trainBase ? { trainBase } : {}),
      ...(options.hfBase
        ? {
            hfBase: (await import("../../training/hf/hf-trainer-options.js")).resolveHfBase(
              options.hfBase,
              process.cwd(),
            ),
          }
        : {}),
      pool,
      command: `selfalign stage ${definition.name} --run ${options.run}${shard ? ` --shard ${options.shard}` : ""}`,
      ...progress,
    });
    const result = await definition.run(context);
    return `${definition.name}: ${result.summary}`;
  } finally {
    await pool.close();
    await run.close();
  }
}

/** `selfalign stage <name>` for every stage of the registry. */
export function registerStage(program: Command, registry: StageRegistry = defaultRegistry): void {
  const stage = program.command("stage").description("Run one stage of the pipeline into a run directory.");
  for (const definition of allStages(registry)) {
    const command = stage
      .command(definition.name)
      .description(definition.summary)
      .requiredOption("--run <dir>", "run directory (created when missing)")
      .option("--model <spec>", "backend, e.g. llama-cpp:./base.gguf or openai:http://host:8000/v1#name")
      .option("--shard <i/n>", "work on shard i of n (merge with `selfalign merge`)")
      .option("--constitution <dir>", "constitution folder (default: the built-in one)")
      .option("--seed <n>", "base seed (default 42)", nonNegative("seed", true));
    if (definition.models.includes("trainer")) {
      command.option("--train-base <gguf>", "GGUF the trainer loads");
      command.option("--hf-base <model>", "trainer hf: the base in Hugging Face form (folder or hub id)");
    }
    if (registry.some((entry) => isGroup(entry) && entry.stages.includes(definition)))
      command.option("--round <n>", "round of the group (default 1)", nonNegative("round"));
    addSchemaFlags(command, schemaFlags(definition.options), definition.flagAliases);
    command.action(async (options: StageCommandOptions) => {
      const summary = await withProgress((onProgress, signal) =>
        runStageCommand(definition, options, onProgress, signal, registry),
      );
      process.stdout.write(`${summary}\n`);
    });
  }
}
