/**
 * Single-answer grading (MT-bench / Vicuna-bench style): a chat judge rates each turn of the model's answers from
 * 1 to 10. Unparseable judge outputs are kept, counted and reported; the mean is over parsed ratings.
 */
import { dirname, join } from "node:path";
import { z } from "zod";
import type { ChatMessage, LanguageModel, SamplingOptions } from "../../backends/language-model.js";
import { type FastChatAnswer, type FastChatQuestion, writeJsonLines } from "../data/fastchat.js";
import { defineEval, runItemEval, withModels } from "../eval-definition.js";
import { type EvalResult, type EvalRunOptions, evalResultHead } from "../eval-result.js";
import {
  contextOverflow,
  type EvalOutcome,
  type EvalSkip,
  evaluateItems,
  isRequestRefused,
} from "../evaluate-items.js";
import { indexAnswers } from "./answer-index.js";
import { toFastChatSingleJudgments } from "./fastchat-judgments.js";
import { answersToJudge, judgeOptions, loadJudgeTask } from "./judge-task.js";
import { callJudge, type JudgeCallResult, JudgeCache } from "./judge-cache.js";
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

export const chatMessageSchema = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string(),
});

export const singleJudgmentSchema = z.object({
  /** `<question_id>:<turn>`. */
  id: z.string(),
  questionId: z.union([z.number(), z.string()]),
  category: z.string().optional(),
  turn: z.number(),
  messages: z.array(chatMessageSchema),
  judgment: z.string(),
  rating: z.number().nullable(),
  parseError: z.string().optional(),
  cached: z.boolean(),
});
export type SingleJudgment = z.infer<typeof singleJudgmentSchema>;

/** The id of a judged turn. */
export function judgedTurnId(question: FastChatQuestion, turn: number): string {
  return `${question.question_id}:${turn}`;
}

/**
 * Ask the judge, or say why this prompt was skipped: one that cannot fit the judge's context (counted on the
 * message texts alone, a lower bound), or that the judge's server refused with a 400.
 */
export async function judgeOrSkip(
  judge: LanguageModel,
  messages: ChatMessage[],
  cache: JudgeCache,
  sampling: SamplingOptions & { signal: AbortSignal },
  where: string,
): Promise<JudgeCallResult | { skipped: EvalSkip }> {
  const overflow = await contextOverflow(judge, messages.map((message) => message.content).join("\n"), where);
  if (overflow) return { skipped: { ...overflow, detail: { messages } } };
  try {
    return await callJudge(judge, messages, cache, sampling);
  } catch (error) {
    if (!isRequestRefused(error)) throw error;
    return { skipped: { filter: "request-refused", reason: `${where}: ${error.message}`, detail: { messages } } };
  }
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
    const { results: items, skipped } = await evaluateItems(
      {
        task,
        items: jobs,
        itemId: (job) => judgedTurnId(job.question, job.turn),
        backend: judge,
        settings: { model: modelId, judge: judge.id, judgeSampling: sampling, ratingScale: "1-10" },
        resultSchema: singleJudgmentSchema,
        evaluate: async (job, signal): Promise<EvalOutcome<SingleJudgment>> => {
          const where = `question ${job.question.question_id} turn ${job.turn}`;
          const call = await judgeOrSkip(judge, job.messages, cache, { ...sampling, signal }, where);
          if ("skipped" in call) return call;
          const parsed = parseRating(call.output);
          return {
            result: {
              id: judgedTurnId(job.question, job.turn),
              questionId: job.question.question_id,
              ...(job.question.category ? { category: job.question.category } : {}),
              turn: job.turn,
              messages: job.messages,
              judgment: call.output,
              rating: parsed.ok ? parsed.rating : null,
              ...(parsed.ok ? {} : { parseError: parsed.reason }),
              cached: call.cached,
            },
          };
        },
        kept: (item) => item.rating !== null,
      },
      options,
    );
    const aggregate = singleAggregate(items, missingAnswers, skipped.length);
    const unparsed = noParsedJudgmentWarning(items.length, items.length - (aggregate.parsed as number), "rating");
    return {
      ...evalResultHead(task, options, modelId, judge.id),
      settings: { modelId, judgeSampling: sampling, ratingScale: "1-10" },
      aggregate,
      items,
      skipped: skipped.map(({ id, filter, reason }) => ({ id, filter, reason })),
      warnings: [
        ...(unparsed ? [unparsed] : []),
        ...skipped.map((skip) => `${skip.id} skipped (${skip.filter}): ${skip.reason}`),
        ...warnings,
      ],
    };
  } finally {
    if (owned) cache.close();
  }
}

/**
 * The message when no judgment could be read (the mean is then undefined, printed "n/a", not NaN), or undefined
 * when some could.
 */
export function noParsedJudgmentWarning(
  judged: number,
  failed: number,
  what: "rating" | "verdict",
): string | undefined {
  if (judged === 0) return "nothing was judged: no question turn had an answer to judge (see the warnings below)";
  if (failed < judged) return undefined;
  const form = what === "rating" ? 'a rating such as "[[7]]" or "Rating: 7/10"' : 'a verdict such as "[[A]]"';
  return (
    `none of the ${judged} judgments could be read as ${form}, so there is no ${what === "rating" ? "mean rating" : "win rate"}; ` +
    "the judge's outputs are kept in eval.json (items[].judgment). Use a judge model that follows the requested " +
    "format, or raise --judge-max-tokens if its answers were cut off before the verdict"
  );
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** Mean rating over parsed judgements, per turn and per category, with counts of parse failures and gaps. */
export function singleAggregate(
  items: readonly SingleJudgment[],
  missingAnswers = 0,
  skipped = 0,
): EvalResult["aggregate"] {
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
    skipped,
    cached: items.filter((item) => item.cached).length,
    meanRatingByTurn: group((item) => `turn${item.turn}`),
    meanRatingByCategory: group((item) => item.category),
  };
}

export const judgeSingleEval = defineEval({
  name: "judge-single",
  description: "1-10 ratings by --judge of --answers (or answers generated by --model)",
  options: z.object(judgeOptions),
  load: (options) => loadJudgeTask(options, "judge-single"),
  run: (loaded, options, context) =>
    withModels(context, (open) =>
      runItemEval(loaded.paths, async (store) => {
        const run = { store, onProgress: context.onProgress, signal: context.signal };
        const { answers, modelId, notes, warnings } = await answersToJudge(loaded, options, open, run);
        const judge = await open(options.judge);
        const result = await judgeSingle({
          ...run,
          judge,
          questions: loaded.questions,
          answers,
          cache: options.cache ?? join(dirname(loaded.paths.out), "judge-cache.jsonl"),
          sampling: { temperature: 0, maxTokens: options.judgeMaxTokens },
          data: [options.data, ...(options.answers ? [options.answers] : [])],
          ...(modelId ? { modelId } : {}),
          ...(options.concurrency ? { concurrency: options.concurrency } : {}),
        });
        result.warnings.push(...warnings);
        const path = options.judgmentsOut ?? loaded.paths.beside("judgments");
        await writeJsonLines(path, toFastChatSingleJudgments(result));
        return { result, notes: [...notes, `wrote FastChat judgments to ${path}`] };
      }),
    ),
});
