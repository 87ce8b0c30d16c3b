/**
 * SALMON's reward for OpenRLHF's remote reward-model calls (method-spec B.5): each query's response is recovered,
 * put in the reviewer prompt with the intervention principles and RL principles drawn by weight (seeded by the
 * request, so a retry is judged the same way), scored by the principle-following reward model, and the symbolic
 * rewards (missing stop, length bonus) are added. Requests wait for a free reward context instead of being turned
 * away: OpenRLHF retries a refused request only five times, a second apart, and then trains without its reward.
 */
import type { Constitution } from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import { USER_TURN_MARKER } from "../../stages/engrave/prompt.js";
import {
  type RlRewardOptions,
  type RlRewardOptionsInput,
  drawRlPrinciples,
  rlReviewerText,
  rlRewardOptionsSchema,
  symbolicReward,
} from "../../stages/salmon/rl-reward.js";
import type { RewardModel } from "../../training/reward/reward-model.js";
import { HttpError } from "../openai-error.js";
import {
  type OpenRlhfRewardReply,
  type OpenRlhfRewardRequest,
  parseRewardLabel,
  type RewardLabel,
} from "./openrlhf-request.js";
import { responseOfQuery, type SpecialTokens } from "./response-of-query.js";

export interface RewardServiceOptions {
  model: RewardModel;
  /** Its salmon.yaml gives the RL principles and interventions; its assistant name goes into the reviewer prompt. */
  constitution: Constitution;
  /** Texts removed from responses, and those that mark a turn's end (see readSpecialTokens). */
  specialTokens: SpecialTokens;
  /** A response holding one of these stopped (the engraved format's next-turn marker). Default ["### User"]. */
  stopStrings?: readonly string[];
  /** Principles drawn, seed, symbolic rewards: the spec's values by default. */
  reward?: RlRewardOptionsInput;
  /** Where warnings and failures go (the CLI prints them on stderr). Default: nowhere. */
  log?: (level: "info" | "warn" | "error", text: string) => void;
}

/** Tokens kept free at the end of the context when a long response is cut to fit. */
const fitMargin = 8;

export class RewardService {
  readonly settings: RlRewardOptions;
  private readonly stopStrings: readonly string[];
  private warnedNoLabel = false;

  constructor(private readonly options: RewardServiceOptions) {
    const parsed = rlRewardOptionsSchema.safeParse(options.reward ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ConfigError(`reward settings: ${issue.message}`, { field: issue.path.join(".") });
    }
    this.settings = parsed.data;
    this.stopStrings = options.stopStrings ?? [USER_TURN_MARKER];
  }

  /** Samples waiting for a free reward context. */
  get queued(): number {
    return this.options.model.queued;
  }

  /** Answers one OpenRLHF request (usually one sample). Bad input is an HttpError 400 naming the sample. */
  async reward(body: OpenRlhfRewardRequest, signal?: AbortSignal): Promise<OpenRlhfRewardReply> {
    const items = body.query.map((query, index) =>
      this.prepare(query, body.prompts?.[index], body.labels?.[index], index),
    );
    const scores = await Promise.all(items.map((item) => this.options.model.scoreTokens(item.tokens, signal)));
    const reply: OpenRlhfRewardReply = {
      rewards: [],
      scores: [],
      extra_logs: { reward_model: [], length_bonus: [], stop_penalty: [], response_tokens: [] },
      principles: [],
    };
    items.forEach((item, index) => {
      const score = scores[index]!;
      const total = score + item.symbolic.stopPenalty + item.symbolic.lengthBonus;
      reply.rewards.push(total);
      reply.scores.push(total);
      reply.extra_logs.reward_model!.push(score);
      reply.extra_logs.length_bonus!.push(item.symbolic.lengthBonus);
      reply.extra_logs.stop_penalty!.push(item.symbolic.stopPenalty);
      reply.extra_logs.response_tokens!.push(item.responseTokens);
      reply.principles.push(item.principles);
    });
    return reply;
  }

  /** The reviewer text (as tokens) and symbolic rewards of one sample. */
  private prepare(query: string, prompt: string | undefined, label: unknown, index: number) {
    const where = (field: string) => `${field}[${index}]`;
    if (prompt === undefined) {
      throw new HttpError(
        400,
        `${where("prompts")} is missing: the response is found by cutting the prompt off the query, so send "prompts" with "query" (OpenRLHF does)`,
        { param: "prompts", code: "missing_prompt" },
      );
    }
    const found = responseOfQuery(query, prompt, this.options.specialTokens, this.stopStrings);
    if (!found) {
      throw new HttpError(
        400,
        `${where("query")} does not contain ${where("prompts")} (neither as its start nor by its last characters); each query must be that prompt followed by the response`,
        { param: "query", code: "prompt_not_in_query" },
      );
    }
    const request = parseRewardLabel(label) ?? this.fallbackLabel(prompt);
    const model = this.options.model;
    const { tokens, principles, reviewed } = this.fitted(request, found.response, index);
    // The length bonus counts the answer as the reward model reads it, in the reward model's tokens.
    const responseTokens = Math.max(0, model.tokenize(reviewed).length - (model.info.addBos ? 1 : 0));
    const symbolic = symbolicReward(
      {
        tokens: responseTokens,
        stopped: found.stopped,
        ...(request.promptType ? { promptType: request.promptType } : {}),
      },
      this.settings,
    );
    return { tokens, principles, symbolic, responseTokens };
  }

  /** Without a label the request is not known apart from the policy prompt: the whole prompt stands for it. */
  private fallbackLabel(prompt: string): RewardLabel {
    if (!this.warnedNoLabel) {
      this.warnedNoLabel = true;
      this.options.log?.(
        "warn",
        "reward requests carry no label with the instruction: the reviewer prompt quotes the whole policy prompt as the request. Write the prompts with selfalign's OpenRLHF export and pass --data.label_key label",
      );
    }
    return { instruction: this.stripSpecial(prompt) };
  }

  private stripSpecial(text: string): string {
    let out = text;
    for (const special of this.options.specialTokens.all) out = out.split(special).join("");
    return out.trim();
  }

  /**
   * The reviewer text's tokens within the reward model's context: a response too long for it is cut from the end,
   * then the request from the start (the reference truncates its RM inputs the same ways), with a warning.
   */
  private fitted(
    request: RewardLabel,
    response: string,
    index: number,
  ): { tokens: number[]; principles: string[]; reviewed: string } {
    const model = this.options.model;
    const limit = model.contextSize;
    // The principles are drawn once, from the request as it came: shortening it does not change them.
    const drawn = drawRlPrinciples(this.options.constitution, { ...request, response }, this.settings);
    const first = rlReviewerText(this.options.constitution, { ...request, response }, this.settings, drawn);
    let tokens = model.tokenize(first.text);
    if (tokens.length <= limit) return { tokens, principles: first.principles, reviewed: first.reviewed };
    let reviewed = first.reviewed;
    let instruction = request.instruction;
    for (let attempt = 0; attempt < 4 && tokens.length > limit; attempt++) {
      const over = tokens.length - limit + fitMargin;
      const responseTokens = model.tokenize(reviewed).slice(model.info.addBos ? 1 : 0);
      if (responseTokens.length > 0) {
        reviewed = model.detokenize(responseTokens.slice(0, Math.max(0, responseTokens.length - over)));
      } else {
        const requestTokens = model.tokenize(instruction).slice(model.info.addBos ? 1 : 0);
        instruction = model.detokenize(requestTokens.slice(Math.min(requestTokens.length, over)));
      }
      const text = rlReviewerText(
        this.options.constitution,
        { ...request, instruction, response: reviewed },
        this.settings,
        drawn,
      );
      tokens = model.tokenize(text.text);
    }
    if (tokens.length > limit) {
      throw new HttpError(
        400,
        `sample ${index}: its reviewer prompt does not fit the reward model's context of ${limit} tokens even with the response and request cut; raise --ctx`,
        { code: "context_length_exceeded" },
      );
    }
    this.options.log?.(
      "warn",
      `sample ${index}: the reviewer prompt was longer than the reward model's context of ${limit} tokens; the response (or the request) was cut to fit`,
    );
    return { tokens, principles: first.principles, reviewed: first.reviewed };
  }
}
