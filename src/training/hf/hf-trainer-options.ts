/**
 * The zod schema of the GPU trainer's settings, for the CLI flags and the YAML config (`trainer: hf` with an
 * `hf:` block): validated once at the boundary, then passed to `new HfTrainer(options)`.
 */
import { z } from "zod";
import { hfDistributedBackends, hfLaunchers, hfLaunchModes } from "./launch-command.js";

const positive = z.number().int().positive();

export const hfTrainerOptionsSchema = z
  .object({
    launcher: z.enum(hfLaunchers).optional(),
    mode: z.enum(hfLaunchModes).optional(),
    distributed: z.enum(hfDistributedBackends).optional(),
    gpusPerMachine: positive.optional(),
    machines: positive.optional(),
    machineRank: z.number().int().nonnegative().optional(),
    mainProcessIp: z.string().min(1).optional(),
    mainProcessPort: positive.max(65535).optional(),
    mixedPrecision: z.enum(["bf16", "fp16", "no"]).optional(),
    python: z.string().min(1).optional(),
    script: z.string().min(1).optional(),
    configDir: z.string().min(1).optional(),
    batchSize: positive.optional(),
    dtype: z.enum(["auto", "bfloat16", "float16", "float32"]).optional(),
    preflight: z.boolean().optional(),
    env: z.record(z.string(), z.string()).optional(),
  })
  .strict();

export type HfTrainerConfig = z.infer<typeof hfTrainerOptionsSchema>;
