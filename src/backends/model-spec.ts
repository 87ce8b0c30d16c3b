/**
 * A model named in a config: the short string spec (`./m.gguf`, `hf:owner/repo/file.gguf`,
 * `openai:http://host:8000/v1#name`) or an object with the spec and the backend's options
 * (`{ spec: "openai:...", apiKeyEnv: KEY, timeoutMs: 60000 }`, `{ spec: ./m.gguf, contextSize: 8192 }`).
 * Resolved once, at the boundary, into a validated BackendConfig; its identity (what shapes the outputs) goes into a
 * stage's settings, its other options (timeouts, retries, keys) do not.
 */
import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import {
  type BackendConfig,
  llamaCppBackendConfigSchema,
  openaiBackendConfigSchema,
  parseBackendSpec,
  validateBackendConfig,
} from "./backend-config.js";

const llamaFields = Object.keys(llamaCppBackendConfigSchema.shape).filter((key) => key !== "type" && key !== "model");
const openaiFields = Object.keys(openaiBackendConfigSchema.shape).filter(
  (key) => key !== "type" && key !== "model" && key !== "baseUrls",
);

/** The object form: `spec` plus options of the spec's backend (`contextSize` is accepted by both). */
export const modelObjectSchema = z
  .looseObject({
    spec: z.string().min(1, "name the model: a .gguf path, an hf: URI or an openai: URL"),
  })
  .superRefine((value, context) => {
    const allowed = new Set(["spec", "contextSize", ...llamaFields, ...openaiFields]);
    for (const key of Object.keys(value)) {
      if (!allowed.has(key)) {
        context.addIssue({
          code: "custom",
          path: [key],
          message: `unknown model option "${key}"; allowed: ${[...allowed].sort().join(", ")}`,
        });
      }
    }
  });

export const modelSpecSchema = z.union([
  z.string().min(1, "name the model: a .gguf path, an hf: URI or an openai: URL"),
  modelObjectSchema,
]);
export type ModelSpec = z.infer<typeof modelSpecSchema>;

/** The string part of a model spec. */
export function specString(spec: ModelSpec): string {
  return typeof spec === "string" ? spec : spec.spec;
}

/** Whether the spec names a server rather than a local or downloadable GGUF. */
export function isServerSpec(spec: ModelSpec): boolean {
  return /^(openai|openai-compatible):|^https?:/.test(specString(spec).trim());
}

export interface ResolveModelOptions {
  /** Resolves relative paths (against the config's folder). Default: against the working directory. */
  resolvePath?: (path: string) => string;
  /** Embedded-engine defaults (the config's `engine:` block), under the object's own options. */
  engine?: Record<string, unknown>;
  /** Names the source in errors. */
  field?: string;
  /** Download `hf:` models now (default true); false only checks the spec. */
  download?: boolean;
  /** Where the model was named (a config field at a line, or a flag), so a bad file's error says what to change. */
  origin?: import("./llama-cpp/model-source.js").ModelSourceOrigin;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

/**
 * Turn a spec into a validated backend config: paths resolved, an `hf:` model downloaded (or found in the cache),
 * object options checked against the spec's backend.
 */
export async function resolveModelSpec(spec: ModelSpec, options: ResolveModelOptions = {}): Promise<BackendConfig> {
  const field = options.field ?? "model";
  const text = specString(spec);
  const parsed = parseBackendSpec(text);
  const { spec: _spec, contextSize, ...extra } = typeof spec === "string" ? { spec } : spec;
  const wrongBackend = Object.keys(extra).filter(
    (key) => !(parsed.type === "llama-cpp" ? llamaFields : openaiFields).includes(key),
  );
  if (wrongBackend.length > 0) {
    throw new ConfigError(
      `${wrongBackend.join(", ")} ${wrongBackend.length > 1 ? "are options" : "is an option"} of ${parsed.type === "llama-cpp" ? "server" : "embedded (llama-cpp)"} models, not of ${text}`,
      { field: `${field}.${wrongBackend[0]}` },
    );
  }
  if (parsed.type === "llama-cpp") {
    const resolvePath = options.resolvePath ?? ((path: string) => (isAbsolute(path) ? path : resolve(path)));
    const source = /^(hf:|huggingface:|https?:)/i.test(parsed.model) ? parsed.model : resolvePath(parsed.model);
    const model =
      options.download === false
        ? source
        : await (await import("./llama-cpp/model-source.js")).resolveModelSource(source, {
            ...(options.origin ? { origin: options.origin } : {}),
            ...(options.onProgress ? { onProgress: options.onProgress } : {}),
            ...(options.signal ? { signal: options.signal } : {}),
          });
    const lora = (extra as { lora?: Array<{ path: string; scale?: number }> }).lora?.map((adapter) => ({
      ...adapter,
      path: resolvePath(adapter.path),
    }));
    return validateBackendConfig(
      {
        ...options.engine,
        ...extra,
        ...(lora ? { lora } : {}),
        ...(contextSize === undefined ? {} : { contextSize }),
        type: "llama-cpp",
        model,
      },
      field,
    );
  }
  return validateBackendConfig({ ...parsed, ...extra, ...(contextSize === undefined ? {} : { contextSize }) }, field);
}

/**
 * What of a resolved model shapes its outputs: the backend, the model (and adapters) for the embedded engine; the
 * endpoints and model name for a server. Timeouts, retries, keys and thread counts are left out.
 */
export function modelIdentity(config: BackendConfig): string {
  if (config.type === "llama-cpp") {
    const adapters = (config.lora ?? []).map(
      (adapter) => `+${adapter.path}${adapter.scale === undefined ? "" : `@${adapter.scale}`}`,
    );
    return `llama-cpp:${config.model}${adapters.join("")}`;
  }
  return `openai:${config.baseUrls.join(",")}#${config.model}`;
}

/** The context window a resolved config asks for, when it names one (the fingerprint of a stage includes it). */
export function configuredContext(config: BackendConfig): number | undefined {
  return config.type === "llama-cpp" ? config.contextSize : (config.contextSize ?? config.maxContext);
}
