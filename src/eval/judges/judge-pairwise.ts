/**
 * Pairwise comparison against another model's answers (Vicuna-bench / MT-bench pairwise): every question turn is
 * judged twice, with the model under test first (game 1) and second (game 2). Agreeing verdicts count; verdicts
 * that disagree count as a tie (and are reported as inconsistent); a game whose verdict cannot be parsed makes the
 * comparison "unparsed", which is counted and reported, and left out of the win/tie/loss rates.
 */
import { dirname, join } from "node:path";
import { z } from "zod";
import type { ChatMessage } from "../../backends/language-model.js";
import { type FastChatAnswer, type FastChatQuestion, loadFastChatAnswers, writeJsonLines } from "../data/fastchat.js";
import { defineEval, runItemEval, withModels } from "../eval-definition.js";
import { type EvalResult, evalResultHead } from "../eval-result.js";
import { type EvalOutcome, evaluateItems } from "../evaluate-items.js";
import { indexAnswers } from "./answer-index.js";
import { toFastChatPairwiseJudgments } from "./fastchat-judgments.js";
import { answersToJudge, judgeOptions, loadJudgeTask } from "./judge-task.js";
import { pairwiseMessages } from "./judge-prompts.js";
import {
  chatMessageSchema,
  defaultJudgeSampling,
  type JudgeOptions,
  judgedTurnId,
  judgedTurns,
  judgeOrSkip,
  noParsedJudgmentWarning,
  openJudgeCache,
} from "./judge-single.js";
import { parseVerdict, type Verdict, verdicts } from "./parse-judgment.js";

export interface JudgePairwiseOptions extends JudgeOptions {
  /** Answers of the model under test. */
  answers: readonly FastChatAnswer[];
  modelId?: string;
  /** Answers of the model compared against. */
  baselineAnswers: readonly FastChatAnswer[];
  baselineModelId?: string;
}

export const pairwiseOutcomes = ["win", "loss", "tie"] as const;
export type PairwiseOutcome = (typeof pairwiseOutcomes)[number];

const pairwiseGameSchema = z.object({
  /** Who is shown as A: the model under test ("model") or the baseline. */
  first: z.enum(["model", "baseline"]),
  messages: z.array(chatMessageSchema),
  judgment: z.string(),
  verdict: z.enum(verdicts).nullable(),
  /** The verdict seen from the model under test. */
  outcome: z.enum(pairwiseOutcomes).nullable(),
  parseError: z.string().optional(),
  cached: z.boolean(),
});
export type PairwiseGame = z.infer<typeof pairwiseGameSchema>;

export const pairwiseJudgmentSchema = z.object({
  /** `<question_id>:<turn>`. */
  id: z.string(),
  questionId: z.union([z.string(), z.number()]),
  category: z.string().optional(),
  turn: z.number(),
  games: z.tuple([pairwiseGameSchema, pairwiseGameSchema]),
  /** Combined outcome for the model under test; "unparsed" when a game's verdict could not be read. */
  outcome: z.enum([...pairwiseOutcomes, "unparsed"]),
  /** The two games disagreed (counted as a tie). */
  inconsistent: z.boolean(),
});
export type PairwiseJudgment = z.infer<typeof pairwiseJudgmentSchema>;

/** Outcome for the model under test of a verdict, given who was shown first. */
export function outcomeOf(verdict: Verdict, first: "model" | "baseline"): PairwiseOutcome {
  if (verdict === "tie") return "tie";
  const modelLetter = first === "model" ? "A" : "B";
  return verdict === modelLetter ? "win" : "loss";
}

/** Combine the two games: agreement counts, disagreement is a tie, an unparsed game makes it unparsed. */
export function combineGames(
  outcome1: PairwiseOutcome | null,
  outcome2: PairwiseOutcome | null,
): { outcome: PairwiseOutcome | "unparsed"; inconsistent: boolean } {
  if (outcome1 === null || outcome2 === null) return { outcome: "unparsed", inconsistent: false };
  if (outcome1 === outcome2) return { outcome: outcome1, inconsistent: false };
  return { outcome: "tie", inconsistent: true };
}

export async function judgePairwise(options: JudgePairwiseOptions): Promise<EvalResult<PairwiseJudgment>> {
  const { judge, questions } = options;
  const task = "judge-pairwise";
  const sampling = { ...defaultJudgeSampling, ...options.sampling };
  const model = indexAnswers(options.answers, { modelId: options.modelId });
  const baseline = indexAnswers(options.baselineAnswers, { modelId: options.baselineModelId });
  const warnings: string[] = [];
  let missingAnswers = 0;
  const jobs: Array<{
    question: FastChatQuestion;
    turn: number;
    games: Array<{ first: "model" | "baseline"; messages: ChatMessage[] }>;
  }> = [];
  for (const question of questions) {
    const key = String(question.question_id);
    for (let turn = 1; turn <= question.turns.length; turn++) {
      const ours = judgedTurns(question, model.byQuestion.get(key), turn);
      const theirs = judgedTurns(question, baseline.byQuestion.get(key), turn);
      if (!ours || !theirs) {
        missingAnswers++;
        warnings.push(`question ${key} turn ${turn}: no answer from ${!ours ? model.modelId : baseline.modelId}`);
        continue;
      }
      const reference = question.reference?.[turn - 1];
      jobs.push({
        question,
        turn,
        games: [
          { first: "model", messages: pairwiseMessages(ours, theirs, reference) },
          { first: "baseline", messages: pairwiseMessages(theirs, ours, reference) },
        ],
      });
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
        settings: {
          model: model.modelId,
          baseline: baseline.modelId,
          judge: judge.id,
          judgeSampling: sampling,
        },
        resultSchema: pairwiseJudgmentSchema,
        evaluate: async (job, signal): Promise<EvalOutcome<PairwiseJudgment>> => {
          const games = [] as PairwiseGame[];
          for (const [index, game] of job.games.entries()) {
            const where = `question ${job.question.question_id} turn ${job.turn} game ${index + 1}`;
            const call = await judgeOrSkip(judge, game.messages, cache, { ...sampling, signal }, where);
            if ("skipped" in call) return call;
            const parsed = parseVerdict(call.output);
            games.push({
              first: game.first,
              messages: game.messages,
              judgment: call.output,
              verdict: parsed.ok ? parsed.verdict : null,
              outcome: parsed.ok ? outcomeOf(parsed.verdict, game.first) : null,
              ...(parsed.ok ? {} : { parseError: parsed.reason }),
              cached: call.cached,
            });
          }
          const [game1, game2] = games as [PairwiseGame, PairwiseGame];
          return {
            result: {
              id: judgedTurnId(job.question, job.turn),
              questionId: job.question.question_id,
              ...(job.question.category ? { category: job.question.category } : {}),
              turn: job.turn,
              games: [game1, game2],
              ...combineGames(game1.outcome, game2.outcome),
            },
          };
        },
        kept: (item) => item.outcome !== "unparsed",
      },
      options,
    );
    const aggregate = pairwiseAggregate(items, missingAnswers, skipped.length);
    const unparsed = noParsedJudgmentWarning(items.length, aggregate.unparsed as number, "verdict");
    return {
      ...evalResultHead(task, options, model.modelId, judge.id),
      settings: {
        modelId: model.modelId,
        baselineModelId: baseline.modelId,
        judgeSampling: sampling,
        protocol:
          "each turn judged with both orders; disagreement = tie; unparsed games reported, not counted in rates",
      },
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

export function pairwiseAggregate(
  items: readonly PairwiseJudgment[],
  missingAnswers = 0,
  skipped = 0,
): EvalResult["aggregate"] {
  const count = (outcome: PairwiseJudgment["outcome"]) => items.filter((item) => item.outcome === outcome).length;
  const wins = count("win");
  const losses = count("loss");
  const ties = count("tie");
  const decided = wins + losses + ties;
  const rate = (value: number) => (decided === 0 ? Number.NaN : value / decided);
  return {
    comparisons: items.length,
    wins,
    ties,
    losses,
    inconsistent: items.filter((item) => item.inconsistent).length,
    unparsed: count("unparsed"),
    parseFailures: items.reduce((sum, item) => sum + item.games.filter((game) => game.verdict === null).length, 0),
    missingAnswers,
    skipped,
    cached: items.reduce((sum, item) => sum + item.games.filter((game) => game.cached).length, 0),
    winRate: rate(wins),
    tieRate: rate(ties),
    lossRate: rate(losses),
    /** (wins + ties/2) / decided. */
    score: rate(wins + ties / 2),
  };
}

export const judgePairwiseEval = defineEval({
  name: "judge-pairwise",
  description: "--judge compares --answers (or --model's) with --baseline answers, both orders",
  options: z.object({
    ...judgeOptions,
    baseline: z
      .string({ message: "is required: the FastChat answer jsonl of the model compared against" })
      .meta({ description: "FastChat answer jsonl of the model compared against", placeholder: "<path>" }),
    baselineId: z.string().optional().meta({ description: "model_id to pick from --baseline", placeholder: "<name>" }),
  }),
  async load(options) {
    return {
      ...(await loadJudgeTask(options, "judge-pairwise")),
      baselineAnswers: await loadFastChatAnswers(options.baseline),
    };
  },
  run: (loaded, options, context) =>
    withModels(context, (open) =>
      runItemEval(loaded.paths, async (store) => {
        const run = { store, onProgress: context.onProgress, signal: context.signal };
        const { answers, modelId, notes, warnings } = await answersToJudge(loaded, options, open, run);
        const judge = await open(options.judge);
        const result = await judgePairwise({
          ...run,
          judge,
          questions: loaded.questions,
          answers,
          baselineAnswers: loaded.baselineAnswers,
          cache: options.cache ?? join(dirname(loaded.paths.out), "judge-cache.jsonl"),
          sampling: { temperature: 0, maxTokens: options.judgeMaxTokens },
          data: [options.data, ...(options.answers ? [options.answers] : []), options.baseline],
          ...(modelId ? { modelId } : {}),
          ...(options.baselineId ? { baselineModelId: options.baselineId } : {}),
          ...(options.concurrency ? { concurrency: options.concurrency } : {}),
        });
        result.warnings.push(...warnings);
        const path = options.judgmentsOut ?? loaded.paths.beside("judgments");
        await writeJsonLines(path, toFastChatPairwiseJudgments(result));
        return { result, notes: [...notes, `wrote FastChat judgments to ${path}`] };
      }),
    ),
});
