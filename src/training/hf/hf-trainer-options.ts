/**
 * The zod schema of the GPU trainer's settings, for the CLI flags and the YAML config (`trainer: hf` with an
 * `hf:` block): validated once at the boundary, then passed to `new HfTrainer(options)`. And the base model it
 * trains, which transformers reads in Hugging Face form (a folder or a hub id), not as a GGUF.
 */
import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { hfDistributedBackends, hfLaunchers, hfLaunchModes } from "./launch-command.js";

const positive = z.number().int().positive();

export const hfTrainerOptionsSchema = z
  .object({
    launcher: z.enum(hfLaunchers).optional(),
    mode: z.enum(hfLaunchModes).optional(),
    distributed: z.enum(hfDistributedBackends).optional(),
    gpusPerMachine: positive.optional(),
    numProcesses: positive.optional(),
    machines: positive.optional(),
    machineRank: z.number().int().nonnegative().optional(),
    mainProcessIp: z.string().min(1).optional(),
    mainProcessPort: positive.max(65535).optional(),
    mixedPrecision: z.enum(["bf16", "fp16", "no"]).optional(),
    python: z.string().min(1).optional(),
    script: z.string().min(1).optional(),
    configDir: z.string().min(1).optional(),
    accelerateConfig: z.string().min(1).optional(),
    deepspeedConfig: z.string().min(1).optional(),
    batchSize: positive.optional(),
    dtype: z.enum(["auto", "bfloat16", "float16", "float32"]).optional(),
    preflight: z.boolean().optional(),
    env: z
      .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected an environment variable name"), z.string())
      .optional(),
  })
  .strict();

export type HfTrainerConfig = z.infer<typeof hfTrainerOptionsSchema>;

/** The base model for the GPU trainer: a Hugging Face model folder (with config.json) or a hub id (`owner/name`). */
export const hfBaseSchema = z
  .string()
  .min(1)
  .refine((value) => !/\.gguf$/i.test(value), {
    message:
      "expected a Hugging Face model folder or hub id (owner/name), not a GGUF: transformers trains the Hugging " +
      "Face form of the model, and the adapter is then converted to GGUF for the .gguf base",
  });

const hubId = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

/**
 * Where transformers will load `value` from: a local folder (a path that exists, or one written as a path: `./`,
 * `../`, `/`, `~/`) resolved against `baseDir`, else a hub id left as it is (as `from_pretrained` decides).
 * Throws a ConfigError naming `field` for a folder without config.json or a value that is neither.
 */
export function resolveHfBase(value: string, baseDir: string, field = "hfBase"): string {
  const expanded = value.startsWith("~/") ? join(homedir(), value.slice(2)) : value;
  const local = isAbsolute(expanded) ? expanded : resolve(baseDir, expanded);
  const writtenAsPath = /^(\.{1,2}\/|\/|~\/)/.test(value);
  if (writtenAsPath || existsSync(local)) {
    if (!existsSync(local) || !statSync(local).isDirectory())
      throw new ConfigError(`${field}: ${local} is not a folder; expected a Hugging Face model folder or hub id`, {
        field,
      });
    if (!existsSync(join(local, "config.json")))
      throw new ConfigError(
        `${field}: ${local} has no config.json; expected a Hugging Face model folder (save_pretrained output)`,
        { field },
      );
    return local;
  }
  if (!hubId.test(value))
    throw new ConfigError(
      `${field}: "${value}" is neither an existing folder nor a hub id such as meta-llama/Llama-2-7b-hf`,
      { field },
    );
  return value;
}
