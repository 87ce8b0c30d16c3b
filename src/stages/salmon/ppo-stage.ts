/**
 * SALMON's RL on one machine (method-spec B.5): embedded PPO of the SFT policy against the principle-following
 * reward model. Each rollout is judged in the reviewer prompt under the intervention principles and RL principles
 * drawn for it by weight, and the symbolic rewards (missing-stop penalty, length bonus by prompt type) are added.
 * Every rollout is a record of salmon-rl-rollouts with its reward parts and tokens; the curve is ppo/ppo.jsonl.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import type { Constitution } from "../../constitution/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { recordId, type StageStore } from "../../run-store/index.js";
import { type PpoOptions, ppoOptionsSchema, ppoUnfingerprinted } from "../../training/embedded/ppo/ppo-options.js";
import type { PpoPrompt, PpoResult } from "../../training/embedded/ppo/ppo-trainer.js";
import { chatPrompt, type PromptStyle } from "../engrave/prompt.js";
import { keptRecordSchema, rejectedRecordSchema } from "../shared/record-schemas.js";
import type { RlPrompt } from "./openrlhf-export.js";
import { type RlRewardOptions, rlReviewerText, rlRewardOptionsSchema, symbolicReward } from "./rl-reward.js";

export const salmonRlRolloutsStage = "salmon-rl-rollouts";

/** `trainer: embedded`: PPO's settings (SALMON's values by default), the reward's, and where the models come from. */
export const salmonPpoOptionsSchema = ppoOptionsSchema.extend({
  sftAdapter: z
    .string()
    .min(1)
    .optional()
    .describe("the SFT adapter PPO starts from and stays near (default: the verbose-clone, else the engrave adapter)"),
  rewardModel: z
    .string()
    .min(1)
    .optional()
    .describe("the reward model folder (default: the salmon-reward-model stage's)"),
  reward: rlRewardOptionsSchema.prefault({}),
  rewardThreads: z
    .number()
    .int()
    .positive()
    .default(1)
    .describe("llama.cpp threads of the reward model (1 is fastest for small models and on busy machines)"),
});
export type SalmonPpoOptions = z.infer<typeof salmonPpoOptionsSchema>;

/** One rollout as stored: the response, its reward and the parts of it, and the principles it was judged under. */
export const salmonRolloutRecordSchema = keptRecordSchema({
  parentId: z.string(),
  step: z.number().int().positive(),
  instruction: z.string(),
  input: z.string(),
  promptType: z.string(),
  output: z.string(),
  responseTokens: z.number().int().min(0),
  stopped: z.boolean(),
  reward: z.number(),
  score: z.number(),
  stopPenalty: z.number(),
  lengthBonus: z.number(),
  kl: z.number(),
  principles: z.array(z.string()),
});
export type SalmonRolloutRecord = z.infer<typeof salmonRolloutRecordSchema>;

export const salmonRolloutRejectedSchema = rejectedRecordSchema({ instruction: z.string().optional() });

interface StagePrompt extends PpoPrompt {
  rl: RlPrompt;
}

export interface RunSalmonPpoOptions {
  /** salmon-rl-rollouts. */
  store: StageStore;
  /** Where ppo/ goes (the salmon-rl folder). */
  dir: string;
  prompts: readonly RlPrompt[];
  constitution: Constitution;
  style: PromptStyle;
  base: string;
  sftAdapter?: string;
  rewardModel: string;
  options: SalmonPpoOptions;
  seed: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

/** A short hash of what decides the numbers of a PPO run, in its records' ids (a changed setting makes new ones). */
function settingsHash(options: RunSalmonPpoOptions): string {
  const ppo = Object.fromEntries(
    Object.entries(options.options).filter(
      ([k]) => k !== "rewardThreads" && !(ppoUnfingerprinted as readonly string[]).includes(k),
    ),
  );
  return createHash("sha256")
    .update(JSON.stringify([ppo, options.seed, options.style, options.sftAdapter ?? null, options.rewardModel]))
    .digest("hex")
    .slice(0, 12);
}

export async function runSalmonPpo(options: RunSalmonPpoOptions): Promise<PpoResult> {
  const { store, constitution, style, options: settings } = options;
  const { sftAdapter: _sft, rewardModel: _rm, reward: rewardSettings, rewardThreads, ...ppo } = settings;
  const rewardOptions: RlRewardOptions = rewardSettings;
  const key = settingsHash(options);
  const prompts: StagePrompt[] = options.prompts.map((rl) => ({
    id: rl.id,
    prompt: chatPrompt(constitution.assistant, style, rl.instruction, rl.input ?? ""),
    rl,
  }));
  // The engine and trainer load only when PPO runs (the CLI's start-up and --help stay free of node-llama-cpp).
  const [{ RewardModel }, { runPpo }] = await Promise.all([
    import("../../training/reward/reward-model.js"),
    import("../../training/embedded/ppo/ppo-trainer.js"),
  ]);
  const rewardModel = await RewardModel.load(options.rewardModel, { base: options.base, threads: rewardThreads });
  try {
    return await runPpo<StagePrompt>({
      base: options.base,
      output: join(options.dir, "ppo"),
      prompts,
      options: ppo satisfies Partial<PpoOptions>,
      seed: options.seed,
      ...(options.sftAdapter ? { policyAdapter: options.sftAdapter } : {}),
      valueFrom: options.rewardModel,
      reward: async (rollouts, signal) => {
        const rewards = [];
        for (const rollout of rollouts) {
          const { rl } = rollout.prompt;
          const item = {
            instruction: rl.instruction,
            ...(rl.input ? { input: rl.input } : {}),
            response: rollout.text,
            promptType: rl.promptType,
          };
          const reviewer = rlReviewerText(constitution, item, rewardOptions);
          const tokens = rewardModel.tokenize(reviewer.text);
          const score = await rewardModel.scoreTokens(tokens, signal);
          const symbolic = symbolicReward(
            { tokens: rollout.responseTokens, stopped: rollout.stopped, promptType: rl.promptType },
            rewardOptions,
          );
          rewards.push({
            reward: score + symbolic.stopPenalty + symbolic.lengthBonus,
            parts: { score, ...symbolic },
            details: { principles: reviewer.principles },
            rewardTokens: tokens.length,
          });
        }
        return rewards;
      },
      onDropped: async (prompt, tokens) => {
        await store.appendRejected({
          id: recordId(salmonRlRolloutsStage, key, "dropped", prompt.id),
          parentId: prompt.id,
          filter: "query-length",
          reason: `the policy prompt is ${tokens} tokens long, more than queryLength ${ppo.queryLength}`,
          instruction: prompt.rl.instruction,
        });
      },
      onStep: async ({ step, rollouts }) => {
        for (const rollout of rollouts) {
          const { rl } = rollout.prompt;
          const id = recordId(salmonRlRolloutsStage, key, step, rollout.index, rl.id);
          if (store.isDone(id)) continue;
          // What the step paid for: the policy's prompt and response, and the reward model's prompt.
          store.addUsage(
            {
              promptTokens: rollout.promptTokens + (rollout.rewardTokens ?? 0),
              completionTokens: rollout.responseTokens,
            },
            id,
          );
          await store.appendRecord({
            id,
            parentId: rl.id,
            step,
            instruction: rl.instruction,
            input: rl.input ?? "",
            promptType: rl.promptType,
            output: rollout.text,
            responseTokens: rollout.responseTokens,
            stopped: rollout.stopped,
            reward: rollout.reward,
            score: rollout.parts?.score ?? 0,
            stopPenalty: rollout.parts?.stopPenalty ?? 0,
            lengthBonus: rollout.parts?.lengthBonus ?? 0,
            kl: rollout.kl,
            principles: (rollout.details?.principles as string[] | undefined) ?? [],
          });
        }
        await store.saveManifest();
      },
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } finally {
    await rewardModel.dispose();
  }
}
