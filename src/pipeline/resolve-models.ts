/**
 * The models a pipeline config names, resolved before any work: the generator (a local GGUF, an hf: URI downloaded
 * once, or a server; a string or an object with the backend's options) and the GGUF the trainers load. Every problem
 * is a ConfigError placed at the config file, line and field (`model`, `trainBase`) that names the model, saying
 * what is wrong with the file and how to fix it.
 */
import type { BackendConfig } from "../backends/backend-config.js";
import { isRemoteModelUri } from "../backends/llama-cpp/model-source.js";
import { type ModelSpec, resolveModelSpec, specString } from "../backends/model-spec.js";
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { type LoadedPipelineConfig, resolveConfigPath } from "./pipeline-config.js";

export interface ResolvePipelineModelsOptions {
  /** The stages that train (they need a local GGUF to train on), by name; none: no training base is resolved. */
  training: readonly string[];
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface PipelineModels {
  /** The run's model, validated (a local model's path resolved, an hf: model downloaded). */
  generator: BackendConfig;
  /** GGUF the trainers and the default verbose-clone teacher load. */
  trainBase?: string;
}

const demoHint =
  "To check the whole pipeline offline first, run 'selfalign demo' (it writes a tiny random-weight model; nothing is downloaded).";

const withoutPrefix = (value: string) => (value.startsWith("llama-cpp:") ? value.slice("llama-cpp:".length) : value);

export async function resolvePipelineModels(
  loaded: LoadedPipelineConfig,
  options: ResolvePipelineModelsOptions,
): Promise<PipelineModels> {
  const { config } = loaded;
  const file = loaded.path ?? "config";
  const resolveField = async (field: "model" | "trainBase", spec: ModelSpec): Promise<BackendConfig> => {
    const line = loaded.lineOf?.([field]);
    try {
      return await resolveModelSpec(spec, {
        resolvePath: (path) => resolveConfigPath(loaded, path),
        engine: { seed: config.seed, ...config.engine },
        origin: { file, field, ...(line === undefined ? {} : { line }) },
        field,
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      // A model that could not be downloaded: the demo needs none.
      if (error instanceof ConfigError && isRemoteModelUri(withoutPrefix(specString(spec))))
        throw new ConfigError(`${error.message}\n${demoHint}`, {
          path: file,
          ...(error.line === undefined ? {} : { line: error.line }),
          field,
          cause: error.cause,
        });
      throw error;
    }
  };
  const generator = await resolveField("model", config.model);
  if (options.training.length === 0) return { generator };
  if (config.trainBase) {
    const base = await resolveField("trainBase", config.trainBase);
    if (base.type !== "llama-cpp")
      throw new ConfigError("trainBase must be a GGUF file or an hf: URI, not a server", {
        path: file,
        field: "trainBase",
      });
    return { generator, trainBase: base.model };
  }
  if (generator.type === "llama-cpp") return { generator, trainBase: generator.model };
  const names = options.training;
  throw new ConfigError(
    `${names.join(" and ")} train on a local GGUF, but \`model\` is a server URL (${specString(config.model)}): set \`trainBase\` to the base model's .gguf (or hf: URI), or skip ${names.length > 1 ? "those stages" : "that stage"}`,
    { path: file, field: "trainBase" },
  );
}

/**
 * The model the run's adapters go on, as the config names it (a GGUF path resolved against the config's folder, or
 * an hf: URI), for `chat` and `serve`; undefined when `model` is a server and no `trainBase` is set.
 */
export function baseModelOf(loaded: LoadedPipelineConfig): string | undefined {
  const base = loaded.config.trainBase ?? specString(loaded.config.model);
  if (/^(openai|openai-compatible):|^https?:/.test(base)) return undefined;
  return resolveConfigPath(loaded, withoutPrefix(base));
}
