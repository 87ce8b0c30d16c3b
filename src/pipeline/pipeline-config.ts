/**
 * The `selfalign run` configuration: one YAML file naming the base model, the constitution, and the options of each
 * stage. The `stages:` part is built from the stage registry (each definition's own options schema), so there is one
 * source for defaults. Strict schemas: an unknown option is an error naming its file, line and field, reported before
 * any work.
 */
import { readFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { modelSpecSchema } from "../backends/model-spec.js";
import { parseYamlSource } from "../config/yaml-source.js";
import { describeZodIssues } from "../config/zod-issues.js";
import { formatFieldPath } from "../constitution/constitution-issue.js";
import { ConfigError } from "../errors/index.js";
import { hfBaseSchema } from "../training/hf/hf-trainer-options.js";
import { isGroup, type RegistryEntry } from "./stage-definition.js";
import { defaultRegistry, type StageRegistry } from "./stage-registry.js";
import { positiveInt, type TrainConfig } from "./train-config.js";

export { type SamplingConfig, samplingConfigSchema, type TrainConfig, trainConfigSchema } from "./train-config.js";

/** The config schema of one registry entry: its options plus `skip` (and, for a group, its members' options). */
function entrySchema(entry: RegistryEntry) {
  const skip = z
    .boolean()
    .default(entry.skipByDefault ?? false)
    .describe("do not run this stage");
  if (!isGroup(entry)) return entry.options.extend({ skip }).prefault({});
  const members = Object.fromEntries(entry.stages.map((stage) => [stage.name, stage.options.prefault({})]));
  return entry.options.extend({ skip, ...members }).prefault({});
}

/** The pipeline config schema for a registry (the default one unless a test adds stages). */
export function pipelineConfigSchemaFor(registry: StageRegistry) {
  return z.strictObject({
    /** Run name; the run directory defaults to runs/<name>. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "use letters, digits, '.', '_' and '-'"),
    /**
     * The base model: a GGUF path, an hf: URI (`hf:owner/repo/file.gguf`), a backend spec (`llama-cpp:...`,
     * `openai:http://host/v1#model`), or an object `{ spec, ...backend options }` (`apiKeyEnv`, `timeoutMs`,
     * `maxRetries`, `concurrencyPerEndpoint`, `contextSize`, ...). Generation uses it; training needs a GGUF.
     */
    model: modelSpecSchema,
    /** GGUF the trainer loads when `model` is a server URL. Default: the `model` file itself. */
    trainBase: z.string().optional(),
    /**
     * `trainer: hf`: the base model in Hugging Face form (a folder or a hub id), which transformers trains; the
     * adapter is then converted to a GGUF LoRA for `trainBase`, so later stages run it on llama.cpp.
     */
    hfBase: hfBaseSchema.optional(),
    /** Constitution folder, or "default" for the one shipped with selfalign. */
    constitution: z.string().default("default"),
    /** Default runs/<name>, relative to the config file. */
    runDir: z.string().optional(),
    seed: z.number().int().default(42),
    /** Embedded engine settings (defaults for every embedded model of the run). */
    engine: z
      .strictObject({
        contextSize: positiveInt.optional(),
        sequences: positiveInt.optional(),
        /** Decode threads; default: measured per batch size (1 thread against all cores). */
        threads: positiveInt.optional(),
        batchThreads: positiveInt.optional(),
        /** Bit-reproducible generation (one sequence, no prefix reuse): a resumed run equals an uninterrupted one. */
        deterministic: z.boolean().optional(),
      })
      .default({}),
    stages: z.strictObject(Object.fromEntries(registry.map((entry) => [entry.name, entrySchema(entry)]))).prefault({}),
    /**
     * Stop the run cleanly once it has used this much (the whole run, earlier invocations included): `tokens` counts
     * prompt + generated tokens as the usage ledgers record them; `cost` counts them at the model's
     * `pricePerMillionTokens`. Requests in flight finish; `selfalign run` then exits with status 3, and the same command
     * with a larger budget goes on where it stopped.
     */
    budget: z
      .strictObject({
        tokens: positiveInt.optional(),
        cost: z.number().positive().optional(),
      })
      .optional(),
    /** Write report.html at the end. Default true. */
    report: z.boolean().default(true),
    /** Also write each stage folder's kept records as Parquet with a dataset card, under <run>/exports/. Default true. */
    datasets: z.boolean().default(true),
  });
}

/** Every stage's (and group member's) `train` options in a parsed `stages:` object, with where they sit. */
function trainConfigsOf(stages: Record<string, unknown>): Array<{ path: string[]; train: TrainConfig; skip: boolean }> {
  const found: Array<{ path: string[]; train: TrainConfig; skip: boolean }> = [];
  const visit = (value: unknown, path: string[], skip: boolean) => {
    if (!value || typeof value !== "object" || Array.isArray(value)) return;
    const entry = value as Record<string, unknown>;
    const skipped = skip || entry.skip === true;
    if (entry.train && typeof entry.train === "object")
      found.push({ path, train: entry.train as TrainConfig, skip: skipped });
    for (const [key, child] of Object.entries(entry)) if (key !== "train") visit(child, [...path, key], skipped);
  };
  for (const [name, value] of Object.entries(stages)) visit(value, [name], false);
  return found;
}

/** Rules across fields: `trainer: hf` needs `hfBase`; an `hf` block needs `trainer: hf`. */
function withCrossFieldRules<S extends z.ZodType<{ hfBase?: string; stages: Record<string, unknown> }>>(schema: S) {
  return schema.superRefine((config, context) => {
    for (const { path, train, skip } of trainConfigsOf(config.stages)) {
      if (train.trainer === "hf" && !skip && config.hfBase === undefined)
        context.addIssue({
          code: "custom",
          path: ["hfBase"],
          message: `stages.${path.join(".")}.train.trainer is hf: set hfBase to the base model in Hugging Face form (a folder or hub id); transformers cannot train a GGUF`,
        });
      if (train.trainer !== "hf" && train.hf !== undefined)
        context.addIssue({
          code: "custom",
          path: ["stages", ...path, "train", "hf"],
          message: "hf options are given but the trainer is embedded; set `trainer: hf` or remove the hf block",
        });
    }
  });
}

export const pipelineConfigSchema = pipelineConfigSchemaFor(defaultRegistry);
const checkedDefaultSchema = withCrossFieldRules(pipelineConfigSchema);

export interface PipelineConfig extends Omit<z.infer<typeof pipelineConfigSchema>, "stages"> {
  /** Each stage's (or group's) options by name, defaults applied; `skip` on every one. */
  stages: Record<string, { skip: boolean } & Record<string, unknown>>;
}

export interface LoadedPipelineConfig {
  config: PipelineConfig;
  /** The config file, or undefined for a config built in code. */
  path?: string;
  /** Folder relative paths in the config are resolved against. */
  baseDir: string;
  /** The stages it was validated against (default: the built-in registry). */
  registry?: StageRegistry;
  /** 1-based line of a field in the config file, when it was read from one (for errors about its values). */
  lineOf?: (path: ReadonlyArray<PropertyKey>) => number | undefined;
}

/** Validate a config object; `file` names the source in errors. */
export function parsePipelineConfig(
  value: unknown,
  file = "config",
  lineOf: (path: ReadonlyArray<PropertyKey>) => number | undefined = () => undefined,
  registry: StageRegistry = defaultRegistry,
): PipelineConfig {
  const schema = registry === defaultRegistry ? pipelineConfigSchema : pipelineConfigSchemaFor(registry);
  const parsed = (registry === defaultRegistry ? checkedDefaultSchema : withCrossFieldRules(schema)).safeParse(value);
  if (parsed.success) return parsed.data as PipelineConfig;
  const [first, ...rest] = describeZodIssues(parsed.error.issues, value, schema);
  const field = formatFieldPath(first!.path);
  const more = rest.length ? ` (and ${rest.length} more problem${rest.length > 1 ? "s" : ""})` : "";
  throw new ConfigError(`${first!.message}${more}`, {
    path: file,
    ...(lineOf(first!.path) !== undefined ? { line: lineOf(first!.path)! } : {}),
    ...(field ? { field } : {}),
  });
}

/** Read and validate a YAML config file. */
export async function loadPipelineConfig(
  path: string,
  registry: StageRegistry = defaultRegistry,
): Promise<LoadedPipelineConfig> {
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError(
      error.code === "ENOENT" ? "config file not found; create one with 'selfalign init <dir>'" : error.message,
      { path },
    );
  });
  const parsed = parseYamlSource(path, text);
  if (!parsed.ok) {
    const issue = parsed.issues[0]!;
    throw new ConfigError(issue.message, { path, ...(issue.line !== undefined ? { line: issue.line } : {}) });
  }
  const config = parsePipelineConfig(parsed.source.value ?? {}, path, parsed.source.lineOf, registry);
  return { config, path, baseDir: dirname(resolve(path)), registry, lineOf: parsed.source.lineOf };
}

/** Resolve a path from the config against the config's folder (hf: URIs and URLs are left alone). */
export function resolveConfigPath(loaded: LoadedPipelineConfig, value: string): string {
  if (/^(hf:|https?:|openai:|llama-cpp:)/.test(value) || isAbsolute(value)) return value;
  return resolve(loaded.baseDir, value);
}

/** The run directory of a config. */
export function runDirOf(loaded: LoadedPipelineConfig): string {
  return resolveConfigPath(loaded, loaded.config.runDir ?? `runs/${basename(loaded.config.name)}`);
}
