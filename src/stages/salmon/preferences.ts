/**
 * SALMON step 2, principle-driven preference labelling (method-spec B.2): for every pair of sampled answers and
 * every reward principle, the SFT model reads our judge prompt in both orders of the two answers, and the
 * log-probabilities of the option letters after "Output (" give s12 (order 1, 2: log p(a) - log p(b)) and s21
 * (order 2, 1: log p(b) - log p(a)); both are positive when answer 1 is preferred. Nothing is generated.
 */
import type { LanguageModel, ScoreResult } from "../../backends/language-model.js";
import type { Constitution, RewardPrinciple } from "../../constitution/index.js";
import { BackendError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { type ItemResult, recordId, type StageStore, type StoreRecord } from "../../run-store/index.js";
import { overflowRejection } from "../shared/context-check.js";
import { judgeOptions, judgePromptHead, judgePromptTail } from "./judge-prompt.js";
import type { SalmonResponseRecord } from "./responses.js";
import { rewardPrincipleText } from "./reviewer-prompt.js";

export const salmonPreferencesStage = "salmon-preferences";

/** 1: answer 1 preferred in both orders; 2: answer 2 in both; 0: the orders disagree (or a score is exactly 0). */
export type PrinciplePreference = 0 | 1 | 2;

/** The judgment of one pair under one principle. */
export interface Judgment {
  principle: string;
  /** Order (1, 2): log p("a") - log p("b"), answer 1 shown as Output (a). */
  s12: number;
  /** Order (2, 1): log p("b") - log p("a"), answer 1 shown as Output (b). */
  s21: number;
  preference: PrinciplePreference;
}

/** B.2's agreement rule: a preference only when both orders point the same way. */
export function preferenceOf(s12: number, s21: number): PrinciplePreference {
  if (s12 > 0 && s21 > 0) return 1;
  if (s12 < 0 && s21 < 0) return 2;
  return 0;
}

/** Two answers to one prompt, to be judged. */
export interface ResponsePair {
  /** The pair's id (derived from the prompt's). */
  id: string;
  /** The prompt both answer. */
  parentId: string;
  instruction: string;
  input: string;
  output1: string;
  output2: string;
  /** Ids of the two salmon-responses records, sample 0 then sample 1. */
  responseIds: [string, string];
  /** Whether each answer ended by itself. */
  ended: [boolean, boolean];
  questionType?: string;
}

export interface SalmonPreferenceRecord extends Omit<ResponsePair, "id"> {
  [field: string]: unknown;
  id: string;
  judgments: Judgment[];
  judge: string;
}

export const pairId = (promptId: string) => recordId(salmonPreferencesStage, promptId);

/**
 * The pairs among the responses: prompts whose two samples were both kept, in a stable order that does not depend on
 * which other prompts exist (a hash of the seed and the prompt), so `maxPairs` takes the same pairs as a run grows.
 */
export function pairResponses(responses: readonly SalmonResponseRecord[], seed: number): ResponsePair[] {
  const byPrompt = new Map<string, SalmonResponseRecord[]>();
  for (const response of responses) {
    const list = byPrompt.get(response.parentId) ?? [];
    list[response.sample] = response;
    byPrompt.set(response.parentId, list);
  }
  const pairs: Array<ResponsePair & { rank: string }> = [];
  for (const [promptId, [first, second]] of byPrompt) {
    if (!first || !second) continue;
    pairs.push({
      id: pairId(promptId),
      parentId: promptId,
      instruction: first.instruction,
      input: first.input,
      output1: first.output,
      output2: second.output,
      responseIds: [first.id, second.id],
      ended: [first.ended, second.ended],
      ...(first.questionType ? { questionType: first.questionType } : {}),
      rank: recordId("pair-order", seed, promptId),
    });
  }
  return pairs.sort((a, b) => a.rank.localeCompare(b.rank)).map(({ rank: _rank, ...pair }) => pair);
}

export interface RunSalmonPreferencesOptions {
  judge: LanguageModel;
  store: StageStore;
  pairs: readonly ResponsePair[];
  /** The reward principles to judge by (salmon.yaml's, by default all of them). */
  principles: readonly RewardPrinciple[];
  constitution: Constitution;
  /** Pairs judged at once; each sends its 2 x principles score calls together. Default 2. */
  concurrency?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunSalmonPreferencesResult {
  counts: { kept: number; rejected: number; pairs: number };
  usage: { promptTokens: number; completionTokens: number };
}

/** The difference of the two option letters' log-probabilities: first minus second. */
function letterMargin(results: ScoreResult[], judge: LanguageModel): number {
  const [a, b] = results;
  if (!a || !b || !Number.isFinite(a.logprob) || !Number.isFinite(b.logprob))
    throw new BackendError(`${judge.id} returned no finite log-probabilities for the option letters`);
  return a.logprob - b.logprob;
}

/** The per-principle part of the judge prompts, in principle order. */
function judgeTails(constitution: Constitution, principles: readonly RewardPrinciple[]): string[] {
  return principles.map((principle) =>
    judgePromptTail(constitution.assistant, principle.dimension, rewardPrincipleText(constitution, principle, false)),
  );
}

/** Judge one pair under every principle, in both orders: 2 x principles score calls, sent together. */
export async function judgePair(
  judge: LanguageModel,
  pair: ResponsePair,
  principles: readonly RewardPrinciple[],
  constitution: Constitution,
  options: { signal?: AbortSignal; onUsage?: (promptTokens: number, id: string) => void } = {},
): Promise<Judgment[]> {
  const { assistant } = constitution;
  const heads = [
    judgePromptHead(assistant, pair, pair.output1, pair.output2),
    judgePromptHead(assistant, pair, pair.output2, pair.output1),
  ];
  const tails = judgeTails(constitution, principles);
  // Order (1, 2) for every principle, then order (2, 1): on an engine that keeps one sequence's cache, each call
  // then starts from the prefix the one before left.
  const calls = heads.flatMap((head, order) => tails.map((tail, index) => ({ order, index, prompt: head + tail })));
  const margins = await Promise.all(
    calls.map(async ({ prompt, order, index }) => {
      const results = await judge.score(prompt, [...judgeOptions], options.signal ? { signal: options.signal } : {});
      options.onUsage?.(await judge.countTokens(prompt), `${pair.id}/${principles[index]!.id}/${order}`);
      return letterMargin(results, judge);
    }),
  );
  return principles.map((principle, index) => {
    const s12 = margins[index]!;
    // In order (2, 1) answer 1 is Output (b): its preference is log p(b) - log p(a).
    const s21 = -margins[principles.length + index]!;
    return { principle: principle.id, s12, s21, preference: preferenceOf(s12, s21) };
  });
}

export async function runSalmonPreferences(options: RunSalmonPreferencesOptions): Promise<RunSalmonPreferencesResult> {
  const { judge, store, principles, constitution, signal } = options;
  const usage = { promptTokens: 0, completionTokens: 0 };
  const maxContext = judge.capabilities().maxContext;
  const tails = judgeTails(constitution, principles);
  const result = await store.processItems<ResponsePair, StoreRecord>({
    items: options.pairs,
    concurrency: options.concurrency ?? 2,
    ...(signal ? { signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    process: async (pair, itemSignal): Promise<ItemResult> => {
      const { id, ...fields } = pair;
      if (maxContext > 0) {
        // The longest judge prompt of the pair (the longest principle; both orders are as long), plus a letter.
        const longestTail = tails.reduce((longest, tail) => (tail.length > longest.length ? tail : longest));
        const head = judgePromptHead(constitution.assistant, pair, pair.output1, pair.output2);
        const tokens = (await judge.countTokens(head + longestTail)) + 1;
        if (tokens > maxContext) {
          return {
            rejected: {
              ...overflowRejection(id, {
                filter: "context-overflow",
                promptTokens: tokens,
                maxContext,
                reason: `a judge prompt of this pair has ${tokens} tokens, more than the judge's ${maxContext}-token context (raise its context size)`,
              }),
              parentId: pair.parentId,
              instruction: pair.instruction,
            },
          };
        }
      }
      const judgments = await judgePair(judge, pair, principles, constitution, {
        signal: itemSignal,
        onUsage: (promptTokens, requestId) => {
          store.addUsage({ promptTokens, completionTokens: 0 }, requestId);
          usage.promptTokens += promptTokens;
        },
      });
      const kept: SalmonPreferenceRecord = { id, ...fields, judgments, judge: judge.id };
      return { kept };
    },
  });
  await store.saveManifest();
  return {
    counts: { kept: store.manifest.counts.kept, rejected: store.manifest.counts.rejected, pairs: result.total },
    usage,
  };
}
