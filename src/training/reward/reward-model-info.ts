/**
 * reward-model.json: what a reward model folder holds and how its reward is read, written by the trainer next to
 * adapter.gguf and reward-head.safetensors, read by `RewardModel.load`.
 */
import { z } from "zod";

export const rewardModelFile = "reward-model.json";

export const rewardModelInfoSchema = z.object({
  format: z.literal("selfalign-reward-model"),
  version: z.literal(1),
  /** File name of the base model it was trained on. */
  base: z.string(),
  /** Where that base model was at training time (used when no other base is given). */
  basePath: z.string(),
  /** The GGUF LoRA, relative to the folder. */
  adapter: z.string(),
  /** The head (score.weight [1, hidden]), relative to the folder. */
  head: z.string(),
  hidden: z.number().int().positive(),
  /** Whether the text is scored as BOS + tokens(text), as in training. */
  addBos: z.boolean(),
});

export type RewardModelInfo = z.infer<typeof rewardModelInfoSchema>;
