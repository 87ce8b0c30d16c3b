/**
 * A backend from a short string or a config object — the one place CLI flags and YAML configs turn into a
 * LanguageModel. Strings:
 *   llama-cpp:./m.gguf                         embedded llama.cpp on a local GGUF
 *   llama-cpp:hf:owner/repo/file.gguf          embedded, model downloaded from Hugging Face
 *   openai:http://host:8000/v1#model-name      an OpenAI-compatible server
 *   openai:http://a/v1,http://b/v1#model       several replicas, load-balanced
 * A bare `*.gguf` path or `hf:` URI means llama-cpp; a bare `http(s)://...#model` means openai.
 * Objects: a full config (`{ type: "openai", baseUrls, model, ... }`), or a spec string with options of that
 * backend (`{ spec: "openai:http://host/v1#m", apiKeyEnv: "KEY", timeoutMs: 600000, contextSize: 8192 }`).
 */
import type { ProgressListener } from "../progress/progress-event.js";
import { type ModelReference, resolveBackendConfig } from "./backend-config.js";
import type { LanguageModel } from "./language-model.js";
import { createLlamaCppBackend } from "./llama-cpp/index.js";
import { createOpenAICompatibleBackend } from "./openai-compatible/index.js";

export {
  type BackendConfig,
  type BackendSpecObject,
  type ModelReference,
  resolveBackendConfig,
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

/**
 * Create a backend from a string (`llama-cpp:./m.gguf`, `openai:http://host/v1#name`), a spec with options, or a
 * config object. A server is asked once what it is (its context window, which grammar field it reads) unless the
 * config says both; a server that cannot say leaves the defaults, with a warning.
 */
export async function createBackend(spec: ModelReference, options: CreateBackendOptions = {}): Promise<LanguageModel> {
  const config = resolveBackendConfig(spec);
  if (config.type === "llama-cpp") {
    const { type: _type, ...llamaOptions } = config;
    return createLlamaCppBackend({ ...llamaOptions, onProgress: options.onProgress });
  }
  const { type: _type, ...openaiOptions } = config;
  const backend = createOpenAICompatibleBackend({ ...openaiOptions, onProgress: options.onProgress });
  const contextGiven = config.contextSize !== undefined || config.maxContext !== undefined;
  if (!contextGiven || config.serverKind === undefined) {
    try {
      const info = await backend.serverInfo();
      if (!contextGiven && info.contextSize === undefined)
        warn(
          options,
          `${backend.id}: the server does not report its context window; assuming 4096 tokens (set contextSize)`,
        );
    } catch (error) {
      warn(
        options,
        `${backend.id}: could not ask the server what it serves (${(error as Error).message}); ` +
          `${contextGiven ? "" : "assuming a 4096-token context (set contextSize); "}a grammar may be ignored (set serverKind)`,
      );
    }
  }
  return backend;
}

function warn(options: CreateBackendOptions, text: string): void {
  options.onProgress?.({ type: "message", level: "warn", text });
}
