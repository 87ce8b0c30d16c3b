/**
 * Single-answer grading (MT-bench / Vicuna-bench style): a chat judge rates each turn of the model's answers from
 * 1 to 10. Unparseable judge outputs are kept, counted and reported; the mean is over parsed ratings.
 */
import type { ChatMessage, LanguageModel, SamplingOptions } from "../../backends/language-model.js";
import type { FastChatAnswer, FastChatQuestion } from "../data/fastchat.js";
import { type EvalResult, type EvalRunOptions, evalResultHead, runEvalItems } from "../eval-result.js";
import { indexAnswers } from "./answer-index.js";
import { callJudge, JudgeCache } from "./judge-cache.js";
import { type JudgedTurn, singleGradeMessages } from "./judge-prompts.js";
import { parseRating } from "./parse-judgment.js";

export const defaultJudgeSampling: SamplingOptions = { temperature: 0, maxTokens: 512 };

export interface JudgeOptions extends EvalRunOptions {
  judge: LanguageModel;
  questions: readonly FastChatQuestion[];
  /** Cache of finished judgements; a path opens (and appends to) a JSONL file. Default: in memory. */
  cache?: JudgeCache | string;
  /** Default: temperature 0, maxTokens 512. */
  sampling?: SamplingOptions;
}

export interface JudgeSingleOptions extends JudgeOptions {
  answers: readonly FastChatAnswer[];
  /** Which model's answers (when the file holds several). */
  modelId?: string;
}

export interface SingleJudgment {
  questionId: string | number;
  category?: string;
  turn: number;
  messages: ChatMessage[];
  judgment: string;
  rating: number | null;
  parseError?: string;
  cached: boolean;
}

/** Judge turns: the conversation up to `turn` with this model's answers, or undefined when an answer is missing. */
export function judgedTurns(
  question: FastChatQuestion,
  answer: FastChatAnswer | undefined,
  turn: number,
): JudgedTurn[] | undefined {
  const turns = answer?.choices[0]?.turns;
  if (!turns || turns.length < turn) return undefined;
  return question.turns.slice(0, turn).map((text, index) => ({ question: text, answer: turns[index]! }));
}

export async function openJudgeCache(
  cache: JudgeCache | string | undefined,
): Promise<{ cache: JudgeCache; owned: boolean }> {
  if (cache instanceof JudgeCache) return { cache, owned: false };
  return { cache: await JudgeCache.open(cache), owned: true };
}

export async function judgeSingle(options: JudgeSingleOptions): Promise<EvalResult<SingleJudgment>> {
  const { judge, questions } = options;
  const task = "judge-single";
  const sampling = { ...defaultJudgeSampling, ...options.sampling };
  const { modelId, byQuestion } = indexAnswers(options.answers, { modelId: options.modelId });
  const warnings: string[] = [];
  const jobs: Array<{ question: FastChatQuestion; turn: number; messages: ChatMessage[] }> = [];
  let missingAnswers = 0;
  for (const question of questions) {
    for (let turn = 1; turn <= question.turns.length; turn++) {
      const turns = judgedTurns(question, byQuestion.get(String(question.question_id)), turn);
      if (!turns) {
        missingAnswers++;
        warnings.push(`question ${question.question_id} turn ${turn}: no answer from ${modelId}`);
        continue;
      }
      jobs.push({ question, turn, messages: singleGradeMessages(turns, question.reference?.[turn - 1]) });
    }
  }
  const { cache, owned } = await openJudgeCache(options.cache);
  try {
    const items = await runEvalItems(
      task,
      jobs,
      judge,
      options,
      async (job, signal): Promise<SingleJudgment> => {
        const { output, cached } = await callJudge(judge, job.messages, cache, { ...sampling, signal });
        const parsed = parseRating(output);
        return {
          questionId: job.question.question_id,
          ...(job.question.category ? { category: job.question.category } : {}),
          turn: job.turn,
          messages: job.messages,
          judgment: output,
          rating: parsed.ok ? parsed.rating : null,
          ...(parsed.ok ? {} : { parseError: parsed.reason }),
          cached,
        };
      },
      (item) => item.rating !== null,
    );
    return {
      ...evalResultHead(task, options, modelId, judge.id),
      settings: { modelId, judgeSampling: sampling, ratingScale: "1-10" },
      aggregate: singleAggregate(items, missingAnswers),
      items,
      warnings,
    };
  } finally {
    if (owned) cache.close();
  }
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** Mean rating over parsed judgements, per turn and per category, with counts of parse failures and gaps. */
export function singleAggregate(items: readonly SingleJudgment[], missingAnswers = 0): EvalResult["aggregate"] {
  const rated = items.filter((item) => item.rating !== null);
  const group = (key: (item: SingleJudgment) => string | undefined) => {
    const groups: Record<string, number> = {};
    for (const name of new Set(rated.map(key))) {
      if (name !== undefined)
        groups[name] = mean(rated.filter((item) => key(item) === name).map((item) => item.rating!));
    }
    return groups;
  };
  return {
    meanRating: mean(rated.map((item) => item.rating!)),
    judgments: items.length,
    parsed: rated.length,
    parseFailures: items.length - rated.length,
    missingAnswers,
    cached: items.filter((item) => item.cached).length,
    meanRatingByTurn: group((item) => `turn${item.turn}`),
    meanRatingByCategory: group((item) => item.category),
  };
}
