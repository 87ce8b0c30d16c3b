/**
 * What SALMON's reward is during RL (method-spec B.5), shared by `selfalign serve --reward-model` (OpenRLHF's
 * remote reward) and the embedded PPO: each response is put in the reviewer prompt with the intervention principles
 * and RL principles drawn by weight — seeded by the request, so the same response is always judged under the same
 * principles — and symbolic rewards are added to the reward model's score: a penalty for a response that never
 * stopped and a length bonus whose sign depends on the prompt's type.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { Constitution, RlPrinciple, SalmonPromptType } from "../../constitution/index.js";
import { mulberry32 } from "../../random/mulberry32.js";
import { reviewedText, reviewerPrompt, rlGuidelines, salmonOf, sampleRlPrinciples } from "./reviewer-prompt.js";

/** The settings of the RL reward, every one with the spec's value as its default. */
export const rlRewardOptionsSchema = z.strictObject({
  /** RL principles drawn per response (B.5: 3, without replacement, by weight). */
  principles: z.number().int().min(1).default(3).describe("RL principles drawn per response, by weight (SALMON: 3)"),
  /** Mixed into every draw's seed: change it to judge the same responses under other principles. */
  seed: z
    .number()
    .int()
    .default(0)
    .describe("mixed into every principle draw: change it to judge under other principles"),
  /** Added when the response never reached a stop (B.5: -6). 0 turns it off. */
  stopPenalty: z.number().default(-6).describe("added when a response never stopped, 0 = off (SALMON: -6)"),
  /** Weight of the length bonus (B.5: 5). 0 turns it off. */
  lengthBonus: z.number().default(5).describe("weight of the length bonus, 0 = off (SALMON: 5)"),
  /** Response tokens that count as length 1 (B.5: 1024, the reference's response length). */
  lengthScale: z.number().positive().default(1024).describe("response tokens that count as length 1 (SALMON: 1024)"),
  /**
   * The length term is clamped to [-limit, limit] (B.5: 0.8). The reference clamps only from above, so a long answer
   * to a reasoning prompt is penalised without bound; here the clamp is symmetric.
   */
  lengthLimit: z
    .number()
    .min(0)
    .default(0.8)
    .describe("the length term is clamped to [-limit, limit] (SALMON: 0.8, from above only)"),
  /** Length multiplier per prompt type (B.5: general +1, reasoning -0.4, red-teaming 0). */
  lengthMultiplier: z
    .strictObject({
      general: z.number().default(1).describe("length multiplier of general prompts (SALMON: 1)"),
      reasoning: z.number().default(-0.4).describe("length multiplier of reasoning prompts (SALMON: -0.4)"),
      "red-teaming": z.number().default(0).describe("length multiplier of red-teaming prompts (SALMON: 0)"),
    })
    .prefault({}),
});

export type RlRewardOptions = z.infer<typeof rlRewardOptionsSchema>;
export type RlRewardOptionsInput = z.input<typeof rlRewardOptionsSchema>;

/** A response to be rewarded, with the request it answers. */
export interface RlRewardItem {
  instruction: string;
  input?: string;
  /** The generated answer as it came (cut at the first turn marker before the reward model reads it). */
  response: string;
  /** Default "general". */
  promptType?: SalmonPromptType;
}

export interface RlReviewerText {
  /** The reviewer prompt the reward model scores (its reward is read at the last token). */
  text: string;
  /** Ids of the RL principles drawn, in order. */
  principles: string[];
  /** The answer as the reward model reads it. */
  reviewed: string;
}

/** The draw's seed: a hash of the settings' seed and the request, so a repeated request draws the same principles. */
export function rlRewardSeed(seed: number, item: RlRewardItem): number {
  const digest = createHash("sha256")
    .update(JSON.stringify([seed, item.instruction, item.input ?? "", item.response, item.promptType ?? "general"]))
    .digest();
  return digest.readUInt32LE(0);
}

/** The RL principles a response is judged under: `principles` of them, drawn by weight with the item's seed. */
export function drawRlPrinciples(
  constitution: Constitution,
  item: RlRewardItem,
  options: Pick<RlRewardOptions, "principles" | "seed">,
): RlPrinciple[] {
  const random = mulberry32(rlRewardSeed(options.seed, item));
  return sampleRlPrinciples(salmonOf(constitution), item.promptType ?? "general", random, options.principles);
}

/**
 * The reviewer prompt of one response during RL: the interventions, then the RL principles drawn for it (or those
 * given, e.g. drawn before the request was shortened).
 */
export function rlReviewerText(
  constitution: Constitution,
  item: RlRewardItem,
  options: Pick<RlRewardOptions, "principles" | "seed">,
  drawn: readonly RlPrinciple[] = drawRlPrinciples(constitution, item, options),
): RlReviewerText {
  const reviewed = reviewedText(item.response);
  const text = reviewerPrompt({
    assistantName: constitution.assistant.name,
    instruction: item.instruction,
    ...(item.input ? { input: item.input } : {}),
    response: reviewed,
    guidelines: rlGuidelines(constitution, drawn),
  });
  return { text, principles: drawn.map((principle) => principle.id), reviewed };
}

export interface SymbolicReward {
  /** stopPenalty when the response never stopped, else 0. */
  stopPenalty: number;
  /** lengthBonus × clamp(tokens / lengthScale × multiplier, ±lengthLimit). */
  lengthBonus: number;
}

/** The symbolic rewards of a response of `tokens` tokens (B.5's reward shaping). */
export function symbolicReward(
  response: { tokens: number; stopped: boolean; promptType?: SalmonPromptType },
  options: Pick<RlRewardOptions, "stopPenalty" | "lengthBonus" | "lengthScale" | "lengthLimit" | "lengthMultiplier">,
): SymbolicReward {
  const multiplier = options.lengthMultiplier[response.promptType ?? "general"];
  const length = (response.tokens / options.lengthScale) * multiplier;
  const clamped = Math.min(options.lengthLimit, Math.max(-options.lengthLimit, length));
  // `+ 0` turns a -0 (no bonus on a negative multiplier) into 0.
  return { stopPenalty: response.stopped ? 0 : options.stopPenalty, lengthBonus: options.lengthBonus * clamped + 0 };
}
