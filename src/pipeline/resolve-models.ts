/**
 * The models a pipeline config names, resolved before any work: the generator (a local GGUF, an hf: URI downloaded
 * once, or a server) and the GGUF the trainer loads. Every problem is a ConfigError placed at the config file, line
 * and field (`model`, `trainBase`) that names the model, saying what is wrong with the file and how to fix it.
 */
import { isRemoteModelUri, resolveModelSource } from "../backends/llama-cpp/model-source.js";
import { parseBackendSpec } from "../backends/registry.js";
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { type LoadedPipelineConfig, resolveConfigPath } from "./pipeline-config.js";

export interface ResolvePipelineModelsOptions {
  /** Whether a stage trains (engrave, verbose-clone): then a local GGUF to train on is needed. */
  training: boolean;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface PipelineModels {
  /** Local GGUF (downloaded if it was an hf: URI), or undefined when `model` is a server. */
  modelPath?: string;
  /** The backend spec when `model` is a server. */
  serverSpec?: string;
  /** GGUF the trainer and the verbose-clone teacher load. */
  trainBase?: string;
}

const demoHint =
  "To check the whole pipeline offline first, run 'selfalign demo' (it writes a tiny random-weight model; nothing is downloaded).";

export async function resolvePipelineModels(
  loaded: LoadedPipelineConfig,
  options: ResolvePipelineModelsOptions,
): Promise<PipelineModels> {
  const { config } = loaded;
  const file = loaded.path ?? "config";
  const origin = (field: "model" | "trainBase") => {
    const line = loaded.lineOf?.([field]);
    return { file, field, ...(line === undefined ? {} : { line }) };
  };
  const resolveField = async (field: "model" | "trainBase", value: string): Promise<string> => {
    const source = resolveConfigPath(loaded, value.startsWith("llama-cpp:") ? value.slice("llama-cpp:".length) : value);
    try {
      return await resolveModelSource(source, {
        origin: origin(field),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      // A model that could not be downloaded: the demo needs none.
      if (error instanceof ConfigError && isRemoteModelUri(source))
        throw new ConfigError(`${error.message}\n${demoHint}`, {
          path: file,
          ...(error.line === undefined ? {} : { line: error.line }),
          field,
          cause: error.cause,
        });
      throw error;
    }
  };

  const models: PipelineModels = {};
  if (/^(openai|openai-compatible):|^https?:/.test(config.model)) {
    parseBackendSpec(config.model); // validates the URL form
    models.serverSpec = config.model;
  } else {
    models.modelPath = await resolveField("model", config.model);
  }
  if (options.training) {
    if (config.trainBase) models.trainBase = await resolveField("trainBase", config.trainBase);
    else if (models.modelPath) models.trainBase = models.modelPath;
    else
      throw new ConfigError(
        "engrave and verbose-clone train on a local GGUF, but `model` is a server URL: set `trainBase` to the base model's .gguf (or hf: URI), or skip those stages",
        { path: file, field: "trainBase" },
      );
  }
  return models;
}

/**
 * The model the run's adapters go on, as the config names it (a GGUF path resolved against the config's folder, or
 * an hf: URI), for `chat` and `serve`; undefined when `model` is a server and no `trainBase` is set.
 */
export function baseModelOf(loaded: LoadedPipelineConfig): string | undefined {
  const { model, trainBase } = loaded.config;
  const base = trainBase ?? model;
  if (/^(openai|openai-compatible):|^https?:/.test(base)) return undefined;
  return resolveConfigPath(loaded, base.startsWith("llama-cpp:") ? base.slice("llama-cpp:".length) : base);
}
