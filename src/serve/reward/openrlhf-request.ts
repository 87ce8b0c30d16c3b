/**
 * The remote reward-model contract of OpenRLHF (>= 0.10.2; read in openrlhf/utils/agent.py,
 * SingleTurnAgentExecutor._fetch_rewards_via_http, unchanged through 0.11.0): one sample per request,
 * `POST <--reward.remote_url>` with `{"query": [q], "prompts": [p], "labels": [l]}`, where q is the decoded prompt +
 * response with special tokens kept, p the prompt as the dataset gave it, l the dataset's label (`--data.label_key`).
 * The reply needs `rewards`; `scores` (for dynamic filtering, else the rewards) and `extra_logs` (numbers, logged)
 * are optional. Lists of length one are answered as OpenRLHF's own serve_rm.py answers them.
 *
 * The label may carry what selfalign's prompt writer puts there: a JSON object {instruction, input, promptType}, as a
 * string; any other string is taken as the raw instruction.
 */
import { z } from "zod";
import { type SalmonPromptType, salmonPromptTypes } from "../../constitution/index.js";

export const openRlhfRewardRequestSchema = z
  .object({
    query: z.array(z.string()).min(1, "expected at least one query (the decoded prompt + response)"),
    prompts: z.array(z.string()).optional(),
    labels: z.array(z.unknown()).optional(),
  })
  .superRefine((body, context) => {
    for (const key of ["prompts", "labels"] as const) {
      const given = body[key];
      if (given !== undefined && given.length !== body.query.length) {
        context.addIssue({
          code: "custom",
          path: [key],
          message: `has ${given.length} entries but query has ${body.query.length}; send one per query`,
        });
      }
    }
  });

export type OpenRlhfRewardRequest = z.infer<typeof openRlhfRewardRequestSchema>;

export interface OpenRlhfRewardReply {
  rewards: number[];
  scores: number[];
  /** Numbers per sample, which OpenRLHF logs (e.g. to wandb). */
  extra_logs: Record<string, number[]>;
  /** Ids of the RL principles each response was judged under (OpenRLHF ignores it; for logs and debugging). */
  principles: string[][];
}

/** The label selfalign's prompt writer puts in `--data.label_key`. */
export const rewardLabelSchema = z.strictObject({
  instruction: z.string(),
  input: z.string().optional(),
  promptType: z.enum(salmonPromptTypes).optional(),
});

export interface RewardLabel {
  instruction: string;
  input?: string;
  promptType?: SalmonPromptType;
}

/** The label as a JSON string, as the prompt writer stores it (a string column reads the same in every loader). */
export function encodeRewardLabel(label: RewardLabel): string {
  return JSON.stringify(rewardLabelSchema.parse(label));
}

/**
 * What a label says: our JSON object (as a string, or already parsed), else a non-empty string as the raw
 * instruction; undefined for an empty or missing label.
 */
export function parseRewardLabel(label: unknown): RewardLabel | undefined {
  let value = label;
  if (typeof label === "string") {
    if (label.trim() === "") return undefined;
    if (!label.trimStart().startsWith("{")) return { instruction: label };
    try {
      value = JSON.parse(label);
    } catch {
      return { instruction: label };
    }
  }
  const parsed = rewardLabelSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  return typeof label === "string" ? { instruction: label } : undefined;
}
