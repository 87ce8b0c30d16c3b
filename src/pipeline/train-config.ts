/**
 * Option schemas several stages share: sampling overrides and LoRA training options (names as in the
 * LanguageModel and Trainer interfaces; unset options take the stage's or the trainer's defaults).
 */
import { z } from "zod";
import { hfTrainerOptionsSchema } from "../training/hf/hf-trainer-options.js";
import { learningRateSchedules, overlongPolicies } from "../training/trainer.js";

export const positiveInt = z.number().int().positive();
const probability = z.number().min(0).max(1);

/** Sampling options a stage may override. */
export const samplingConfigSchema = z.strictObject({
  temperature: z.number().min(0).optional().describe("sampling temperature (0 = greedy)"),
  topP: probability.optional().describe("nucleus sampling mass"),
  topK: positiveInt.optional().describe("sample from the k most likely tokens"),
  maxTokens: positiveInt.optional().describe("max new tokens per completion"),
  stop: z.array(z.string()).optional().describe("stop strings (JSON array)"),
  seed: z.number().int().optional().describe("sampling seed"),
  frequencyPenalty: z.number().optional().describe("OpenAI frequency penalty"),
  presencePenalty: z.number().optional().describe("OpenAI presence penalty"),
  ngramPenalties: z
    .array(z.strictObject({ n: positiveInt, penalty: z.number() }))
    .optional()
    .describe('Dromedary n-gram penalties (JSON, e.g. [{"n":3,"penalty":1}])'),
  grammar: z
    .string()
    .min(1)
    .optional()
    .describe("a GBNF grammar the output must match: a .gbnf file, or the grammar itself (off by default)"),
});
export type SamplingConfig = z.infer<typeof samplingConfigSchema>;

/** LoRA training options (see TrainOptions for defaults). */
export const trainConfigSchema = z.strictObject({
  trainer: z.enum(["embedded", "hf"]).default("embedded").describe("embedded (CPU, in-process) or hf (GPU)"),
  rank: positiveInt.optional().describe("LoRA rank (default 16)"),
  alpha: z.number().positive().optional().describe("LoRA alpha (default 16)"),
  dropout: z.number().min(0).max(1).optional().describe("LoRA dropout (default 0.05)"),
  targets: z
    .array(z.enum(["q", "k", "v", "o", "gate", "up", "down"]))
    .optional()
    .describe("adapted projections (default q, k, v, o)"),
  learningRate: z.number().positive().optional().describe("peak learning rate (default 4e-4)"),
  epochs: z.number().positive().optional().describe("epochs (default 1)"),
  maxSteps: positiveInt.optional().describe("stop after this many optimizer steps"),
  batchTokens: positiveInt.optional().describe("tokens per micro-batch (default 2048)"),
  gradientAccumulation: positiveInt.optional().describe("micro-batches per step (default 1)"),
  warmupSteps: z.number().int().min(0).optional().describe("linear warm-up steps (default 0)"),
  schedule: z.enum(learningRateSchedules).optional().describe("decay after warm-up (default cosine)"),
  weightDecay: z.number().min(0).optional().describe("AdamW weight decay (default 0)"),
  maxGradNorm: z.number().min(0).optional().describe("gradient clipping, 0 = off (default 1)"),
  cutoffLen: positiveInt.optional().describe("longest example in tokens (default: the model's context)"),
  overlong: z
    .enum(overlongPolicies)
    .default("truncate")
    .describe("an example longer than cutoffLen: truncate (as the reference does), drop or error"),
  checkpointEvery: z.number().int().min(0).optional().describe("checkpoint every N steps (default 50)"),
  kernel: z.enum(["auto", "ts", "wasm", "blas"]).optional().describe("matmul kernel (default auto)"),
  threads: positiveInt.optional().describe("kernel threads (default: all cores)"),
  /** `trainer: hf` only: how to launch it (GPUs, machines, rank, Python, DeepSpeed/FSDP, env; see HfTrainerOptions). */
  hf: hfTrainerOptionsSchema.optional().describe("trainer hf: launch options (JSON)"),
});
export type TrainConfig = z.infer<typeof trainConfigSchema>;
