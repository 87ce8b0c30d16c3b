/**
 * The settings of embedded PPO (method-spec B.5), each named, with the reference's value as its default. Where the
 * reference has a bug (B.7: the sequence reward at the padded end, rewards silently x10), the default is the fix and
 * the description says what the reference did.
 */
import { z } from "zod";
import { loraTargets } from "../lora.js";

const positiveInt = z.number().int().positive();

/** The reference's stop strings: its turn marker, sequence markers and the commentary lines it cut (B.5). */
export const ppoStopDefaults = ["\n\n### User", "<s>", "</s>", "\nUpdate", "\nNote", "\nComment"];

export const ppoOptionsSchema = z.strictObject({
  rolloutBatch: positiveInt.default(576).describe("prompts answered per PPO step (SALMON: 576)"),
  stepBatch: positiveInt.default(288).describe("responses per optimizer step (SALMON: 288)"),
  ppoEpochs: positiveInt.default(2).describe("passes over each step's rollouts (SALMON noptepochs: 2)"),
  epochs: z.number().positive().default(2).describe("passes over the prompts (SALMON: 2)"),
  maxSteps: positiveInt
    .optional()
    .describe("stop after this many PPO steps (default: epochs x prompts / rolloutBatch)"),
  learningRate: z.number().positive().default(2e-5).describe("peak learning rate of policy and value (SALMON: 2e-5)"),
  warmupSteps: z.number().int().min(0).default(5).describe("linear warm-up optimizer steps, then cosine (SALMON: 5)"),
  maxGradNorm: z.number().min(0).default(1).describe("gradient clipping of each model, 0 = off (SALMON: 1)"),
  weightDecay: z.number().min(0).default(0).describe("AdamW weight decay (SALMON: 0)"),
  queryLength: positiveInt.default(256).describe("prompts longer than this many tokens are left out (SALMON: 256)"),
  responseLength: positiveInt.default(1024).describe("max new tokens of a rollout (SALMON: 1024)"),
  temperature: z
    .number()
    .positive()
    .default(0.7)
    .describe("sampling temperature; log-probs are of logits / it (SALMON: 0.7)"),
  topP: z.number().gt(0).max(1).default(1).describe("nucleus sampling mass (SALMON: 1)"),
  stop: z
    .array(z.string().min(1))
    .default(ppoStopDefaults)
    .describe("stop strings; a rollout that reaches one (or end-of-sequence) has stopped (JSON array)"),
  klCoefficient: z
    .number()
    .min(0)
    .default(0.01)
    .describe("per-token reward -coefficient x KL to the reference, fixed (SALMON: 0.01)"),
  klClamp: z
    .boolean()
    .default(true)
    .describe("per-token KL estimate max(log pi - log pi_ref, 0) as SALMON clamps it; false: the plain log-ratio"),
  rewardScale: z
    .number()
    .positive()
    .default(1)
    .describe("sequence rewards are multiplied by this before GAE (the reference silently used 10)"),
  gamma: z.number().min(0).max(1).default(1).describe("GAE discount (SALMON: 1)"),
  lambda: z.number().min(0).max(1).default(1).describe("GAE lambda (SALMON: 1)"),
  whitenAdvantages: z.boolean().default(true).describe("whiten advantages across the step's rollouts (SALMON: on)"),
  clip: z.number().positive().default(0.2).describe("policy ratio clip epsilon (SALMON: 0.2)"),
  valueClip: z.number().positive().default(0.2).describe("value clip epsilon (SALMON: 0.2)"),
  valueCoefficient: z.number().positive().default(0.1).describe("weight of the value loss (SALMON: 0.1)"),
  valueHead: z
    .enum(["zero", "reward"])
    .default("zero")
    .describe("the value model is the reward model's LoRA with a new zero head (SALMON) or with its reward head"),
  dropout: z.number().min(0).max(0.9).default(0).describe("LoRA dropout in the updates (SALMON: 0)"),
  rank: positiveInt.default(16).describe("LoRA rank of a fresh policy (without an SFT adapter to start from)"),
  alpha: z.number().positive().default(16).describe("LoRA alpha of a fresh policy"),
  targets: z
    .array(z.enum(loraTargets))
    .default(["q", "k", "v", "o"])
    .describe("adapted projections of a fresh policy or value model (JSON array)"),
  scoringBatch: positiveInt.default(6).describe("sequences per forward when computing log-probs and values"),
  kernel: z.enum(["auto", "ts", "wasm", "blas"]).default("auto").describe("matmul kernel of the updates"),
  threads: positiveInt.optional().describe("kernel threads (default: all cores)"),
  rolloutThreads: positiveInt.default(1).describe("llama.cpp threads of the rollouts (1 decodes small models fastest)"),
});

export type PpoOptions = z.infer<typeof ppoOptionsSchema>;
export type PpoOptionsInput = z.input<typeof ppoOptionsSchema>;

/** Settings that change neither the numbers nor the data: a checkpoint made with other values resumes. */
export const ppoUnfingerprinted = ["maxSteps", "kernel", "threads", "rolloutThreads"] as const satisfies ReadonlyArray<
  keyof PpoOptions
>;
