/**
 * Backend configs: the short string forms and the config objects, parsed and validated without starting any engine
 * (so configs can be checked, and CLI help built, without loading node-llama-cpp). See registry.ts for the forms.
 */
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { serverKinds } from "./openai-compatible/server-info.js";

export const backendTypes = ["llama-cpp", "openai"] as const;
export type BackendType = (typeof backendTypes)[number];

const positiveInt = z.number().int().positive();

export const llamaCppBackendConfigSchema = z
  .object({
    type: z.literal("llama-cpp"),
    /** A GGUF path or an `hf:owner/repo/file.gguf` URI. */
    model: z.string().min(1),
    contextSize: positiveInt.optional(),
    sequences: positiveInt.optional(),
    threads: positiveInt.optional(),
    batchThreads: positiveInt.optional(),
    gpu: z.union([z.boolean(), z.literal("auto")]).optional(),
    cacheDir: z.string().min(1).optional(),
    lora: z.array(z.object({ path: z.string().min(1), scale: z.number().optional() }).strict()).optional(),
    seed: z.number().int().optional(),
    /** Bit-reproducible generation (one sequence, no prefix reuse); see `LlamaCppBackendOptions.deterministic`. */
    deterministic: z.boolean().optional(),
  })
  .strict();

export const openaiBackendConfigSchema = z
  .object({
    type: z.enum(["openai", "openai-compatible"]),
    baseUrls: z
      .array(z.url({ protocol: /^https?$/, error: "expected an http(s) URL such as http://host:8000/v1" }))
      .min(1),
    model: z.string().min(1),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected the NAME of an environment variable, not the key itself")
      .optional(),
    concurrencyPerEndpoint: positiveInt.optional(),
    timeoutMs: positiveInt.optional(),
    maxRetries: z.number().int().nonnegative().optional(),
    initialBackoffMs: z.number().nonnegative().optional(),
    maxBackoffMs: z.number().nonnegative().optional(),
    /** The server's context window; default: read from its `/v1/models` (else 4096). */
    contextSize: positiveInt.optional(),
    /** Older name of contextSize. */
    maxContext: positiveInt.optional(),
    /** Which server it is (decides the grammar field); default: detected. */
    serverKind: z.enum(serverKinds).optional(),
    returnTokenIds: z.boolean().optional(),
    scoreMethod: z.enum(["echo", "prompt-logprobs"]).optional(),
    extraBody: z.record(z.string(), z.unknown()).optional(),
    /**
     * What the server's provider charges, in money units per million tokens (prompt and completion): `selfalign run
     * --estimate` prints a cost with it, and a pipeline `budget.cost` counts spending with it.
     */
    pricePerMillionTokens: z.strictObject({ prompt: z.number().min(0), completion: z.number().min(0) }).optional(),
  })
  .strict();

export const backendConfigSchema = z.discriminatedUnion("type", [
  llamaCppBackendConfigSchema,
  openaiBackendConfigSchema,
]);
export type BackendConfig = z.infer<typeof backendConfigSchema>;
export type LlamaCppBackendConfig = z.infer<typeof llamaCppBackendConfigSchema>;
export type OpenAIBackendConfig = z.infer<typeof openaiBackendConfigSchema>;

const specForms =
  "expected one of: llama-cpp:<model.gguf>, llama-cpp:hf:<owner>/<repo>/<file>.gguf, " +
  "openai:<base-url>#<model-name> (several base URLs separated by commas)";

function parseOpenAISpec(spec: string, rest: string): BackendConfig {
  const hash = rest.lastIndexOf("#");
  const model = hash >= 0 ? rest.slice(hash + 1).trim() : "";
  if (!model) {
    throw new ConfigError(
      `backend "${spec}" names no model; append #<model-name>, e.g. openai:http://127.0.0.1:8000/v1#my-model`,
      { field: "model" },
    );
  }
  const baseUrls = rest
    .slice(0, hash)
    .split(",")
    .map((url) => url.trim())
    .filter((url) => url !== "");
  return validateBackendConfig({ type: "openai", baseUrls, model }, spec);
}

/** Parse a backend string into a validated config (no engine is started). */
export function parseBackendSpec(spec: string): BackendConfig {
  const text = spec.trim();
  if (text === "") throw new ConfigError(`backend is empty; ${specForms}`, { field: "backend" });
  if (text.startsWith("llama-cpp:"))
    return validateBackendConfig({ type: "llama-cpp", model: text.slice("llama-cpp:".length) }, spec);
  if (text.startsWith("openai:")) return parseOpenAISpec(spec, text.slice("openai:".length));
  if (text.startsWith("openai-compatible:")) return parseOpenAISpec(spec, text.slice("openai-compatible:".length));
  if (/^https?:\/\//.test(text)) return parseOpenAISpec(spec, text);
  if (text.startsWith("hf:") || text.toLowerCase().endsWith(".gguf"))
    return validateBackendConfig({ type: "llama-cpp", model: text }, spec);
  throw new ConfigError(`backend "${spec}" is not recognised; ${specForms}`, { field: "backend" });
}

/** A spec string plus options of the backend it names (`{ spec: "openai:...#m", apiKeyEnv: "KEY" }`). */
export type BackendSpecObject = { spec: string } & Record<string, unknown>;

/** A model as a config may name it: a spec string, a spec with options, or a full config object. */
export type ModelReference = string | BackendSpecObject | BackendConfig;

/** Turn any model reference into a validated config (no engine is started, no path resolved). */
export function resolveBackendConfig(reference: ModelReference, source = "backend config"): BackendConfig {
  if (typeof reference === "string") return parseBackendSpec(reference);
  if (reference && typeof reference === "object" && "spec" in reference) {
    const { spec, ...options } = reference as BackendSpecObject;
    if (typeof spec !== "string")
      throw new ConfigError(`${source}: field "spec" must be a backend string such as openai:http://host/v1#model`, {
        field: "spec",
      });
    const base = parseBackendSpec(spec);
    for (const key of ["type", "baseUrls", "model"] as const) {
      if (key in options)
        throw new ConfigError(`${source}: field "${key}" comes from "spec"; give it there, not beside it`, {
          field: key,
        });
    }
    return validateBackendConfig({ ...base, ...options }, source);
  }
  return validateBackendConfig(reference, source);
}

/** Validate a config object; a ConfigError names the first bad field. */
export function validateBackendConfig(config: unknown, source = "backend config"): BackendConfig {
  const parsed = backendConfigSchema.safeParse(config);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
  const field = [...issue.path.map(String), ...keys.slice(0, 1)].join(".") || "type";
  const got = issue.path.reduce<unknown>(
    (value, key) => (value && typeof value === "object" ? (value as Record<PropertyKey, unknown>)[key] : undefined),
    config,
  );
  const shown = keys.length > 0 ? "" : `, got ${JSON.stringify(got) ?? "nothing"}`;
  throw new ConfigError(`${source}: field "${field}": ${issue.message}${shown}`, { field });
}
