/**
 * The `selfalign run` configuration: one YAML file naming the base model, the constitution, and the options of each
 * stage. Strict schemas: an unknown option is an error naming its file, line and field, reported before any work.
 */
import { readFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { parseYamlSource } from "../config/yaml-source.js";
import { describeZodIssues } from "../config/zod-issues.js";
import { formatFieldPath } from "../constitution/constitution-issue.js";
import { ConfigError } from "../errors/index.js";
import { learningRateSchedules, overlongPolicies } from "../training/trainer.js";

const positiveInt = z.number().int().positive();
const probability = z.number().min(0).max(1);

/** Sampling options a stage may override (names as in the LanguageModel interface). */
export const samplingConfigSchema = z.strictObject({
  temperature: z.number().min(0).optional(),
  topP: probability.optional(),
  topK: positiveInt.optional(),
  maxTokens: positiveInt.optional(),
  stop: z.array(z.string()).optional(),
  seed: z.number().int().optional(),
  frequencyPenalty: z.number().optional(),
  presencePenalty: z.number().optional(),
  ngramPenalties: z.array(z.strictObject({ n: positiveInt, penalty: z.number() })).optional(),
});
export type SamplingConfig = z.infer<typeof samplingConfigSchema>;

/** LoRA training options (see TrainOptions for defaults). */
export const trainConfigSchema = z.strictObject({
  trainer: z.enum(["embedded", "hf"]).default("embedded"),
  rank: positiveInt.optional(),
  alpha: z.number().positive().optional(),
  dropout: z.number().min(0).max(1).optional(),
  targets: z.array(z.enum(["q", "k", "v", "o", "gate", "up", "down"])).optional(),
  learningRate: z.number().positive().optional(),
  epochs: z.number().positive().optional(),
  maxSteps: positiveInt.optional(),
  batchTokens: positiveInt.optional(),
  gradientAccumulation: positiveInt.optional(),
  warmupSteps: z.number().int().min(0).optional(),
  schedule: z.enum(learningRateSchedules).optional(),
  weightDecay: z.number().min(0).optional(),
  maxGradNorm: z.number().min(0).optional(),
  cutoffLen: positiveInt.optional(),
  overlong: z.enum(overlongPolicies).optional(),
  checkpointEvery: z.number().int().min(0).optional(),
  kernel: z.enum(["auto", "ts", "wasm", "blas"]).optional(),
  threads: positiveInt.optional(),
});
export type TrainConfig = z.infer<typeof trainConfigSchema>;

const skip = z.boolean().default(false);

export const pipelineConfigSchema = z.strictObject({
  /** Run name; the run directory defaults to runs/<name>. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "use letters, digits, '.', '_' and '-'"),
  /**
   * The base model: a GGUF path, an hf: URI (`hf:owner/repo/file.gguf`), or a backend spec (`llama-cpp:...`,
   * `openai:http://host/v1#model`). Generation uses it; training needs a GGUF (see `trainBase`).
   */
  model: z.string().min(1, "name the base model: a .gguf path, an hf: URI or an openai: URL"),
  /** GGUF the trainer loads when `model` is a server URL. Default: the `model` file itself. */
  trainBase: z.string().optional(),
  /** Constitution folder, or "default" for the one shipped with selfalign. */
  constitution: z.string().default("default"),
  /** Default runs/<name>, relative to the config file. */
  runDir: z.string().optional(),
  seed: z.number().int().default(42),
  /** Embedded engine settings. */
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
  stages: z
    .strictObject({
      "self-instruct": z
        .strictObject({
          skip,
          target: positiveInt.default(100),
          demos: positiveInt.optional(),
          maxRounds: positiveInt.optional(),
          maxRoundsWithoutProgress: positiveInt.optional(),
          sampling: samplingConfigSchema.optional(),
        })
        .default({ skip: false, target: 100 }),
      "red-team": z
        .strictObject({
          skip,
          epochs: positiveInt.optional(),
          maxTopicsPerType: positiveInt.optional(),
          targetsPerPrompt: positiveInt.optional(),
          topicSampling: samplingConfigSchema.optional(),
          questionSampling: samplingConfigSchema.optional(),
        })
        .default({ skip: false }),
      "self-align": z
        .strictObject({
          skip,
          sampling: samplingConfigSchema.optional(),
          /** Token-id -> bias; default: -100 on the first token of "Sorry" (method-spec A.4). */
          logitBias: z.record(z.string(), z.number()).optional(),
        })
        .default({ skip: false }),
      engrave: z
        .strictObject({
          skip,
          includeIdentity: z.boolean().default(true),
          train: trainConfigSchema.default({ trainer: "embedded" }),
        })
        .default({ skip: false, includeIdentity: true, train: { trainer: "embedded" } }),
      "verbose-clone": z
        .strictObject({
          skip,
          /** Answer at most this many stage-1 prompts (default: all). */
          maxPrompts: positiveInt.optional(),
          sampling: samplingConfigSchema.optional(),
          train: trainConfigSchema.default({ trainer: "embedded" }),
        })
        .default({ skip: false, train: { trainer: "embedded" } }),
    })
    .default({
      "self-instruct": { skip: false, target: 100 },
      "red-team": { skip: false },
      "self-align": { skip: false },
      engrave: { skip: false, includeIdentity: true, train: { trainer: "embedded" } },
      "verbose-clone": { skip: false, train: { trainer: "embedded" } },
    }),
  /** Write report.html at the end. Default true. */
  report: z.boolean().default(true),
});
export type PipelineConfig = z.infer<typeof pipelineConfigSchema>;
export type PipelineStageName = keyof PipelineConfig["stages"];
export const pipelineStageNames = ["self-instruct", "red-team", "self-align", "engrave", "verbose-clone"] as const;

export interface LoadedPipelineConfig {
  config: PipelineConfig;
  /** The config file, or undefined for a config built in code. */
  path?: string;
  /** Folder relative paths in the config are resolved against. */
  baseDir: string;
  /** 1-based line of a field in the config file, when it was read from one (for errors about its values). */
  lineOf?: (path: ReadonlyArray<PropertyKey>) => number | undefined;
}

/** Validate a config object; `file` names the source in errors. */
export function parsePipelineConfig(
  value: unknown,
  file = "config",
  lineOf: (path: ReadonlyArray<PropertyKey>) => number | undefined = () => undefined,
): PipelineConfig {
  const parsed = pipelineConfigSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const [first, ...rest] = describeZodIssues(parsed.error.issues, value, pipelineConfigSchema);
  const field = formatFieldPath(first!.path);
  const more = rest.length ? ` (and ${rest.length} more problem${rest.length > 1 ? "s" : ""})` : "";
  throw new ConfigError(`${first!.message}${more}`, {
    path: file,
    ...(lineOf(first!.path) !== undefined ? { line: lineOf(first!.path)! } : {}),
    ...(field ? { field } : {}),
  });
}

/** Read and validate a YAML config file. */
export async function loadPipelineConfig(path: string): Promise<LoadedPipelineConfig> {
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
  const config = parsePipelineConfig(parsed.source.value ?? {}, path, parsed.source.lineOf);
  return { config, path, baseDir: dirname(resolve(path)), lineOf: parsed.source.lineOf };
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
