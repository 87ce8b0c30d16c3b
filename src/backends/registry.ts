/**
 * A backend from a short string or a config object — the one place CLI flags and YAML configs turn into a
 * LanguageModel. Strings:
 *   llama-cpp:./m.gguf                         embedded llama.cpp on a local GGUF
 *   llama-cpp:hf:owner/repo/file.gguf          embedded, model downloaded from Hugging Face
 *   openai:http://host:8000/v1#model-name      an OpenAI-compatible server
 *   openai:http://a/v1,http://b/v1#model       several replicas, load-balanced
 * A bare `*.gguf` path or `hf:` URI means llama-cpp; a bare `http(s)://...#model` means openai.
 */
import type { ProgressListener } from "../progress/progress-event.js";
import { type BackendConfig, parseBackendSpec, validateBackendConfig } from "./backend-config.js";
import type { LanguageModel } from "./language-model.js";
import { createLlamaCppBackend } from "./llama-cpp/index.js";
import { createOpenAICompatibleBackend } from "./openai-compatible/index.js";

export {
  type BackendConfig,
  type BackendType,
  backendConfigSchema,
  backendTypes,
  type LlamaCppBackendConfig,
  llamaCppBackendConfigSchema,
  type OpenAIBackendConfig,
  openaiBackendConfigSchema,
  parseBackendSpec,
  validateBackendConfig,
} from "./backend-config.js";

export interface CreateBackendOptions {
  /** Receives warnings from the backend (options a server ignores). */
  onProgress?: ProgressListener;
}

/** Create a backend from a string (`llama-cpp:./m.gguf`, `openai:http://host/v1#name`) or a config object. */
export async function createBackend(
  spec: string | BackendConfig,
  options: CreateBackendOptions = {},
): Promise<LanguageModel> {
  const config = typeof spec === "string" ? parseBackendSpec(spec) : validateBackendConfig(spec);
  if (config.type === "llama-cpp") {
    const { type: _type, ...llamaOptions } = config;
    return createLlamaCppBackend({ ...llamaOptions, onProgress: options.onProgress });
  }
  const { type: _type, ...openaiOptions } = config;
  return createOpenAICompatibleBackend({ ...openaiOptions, onProgress: options.onProgress });
}
