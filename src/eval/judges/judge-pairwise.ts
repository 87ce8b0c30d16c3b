/**
 * Pairwise comparison against another model's answers (Vicuna-bench / MT-bench pairwise): every question turn is
 * judged twice, with the model under test first (game 1) and second (game 2). Agreeing verdicts count; verdicts
 * that disagree count as a tie (and are reported as inconsistent); a game whose verdict cannot be parsed makes the
 * comparison "unparsed", which is counted and reported, and left out of the win/tie/loss rates.
 */
import type { ChatMessage } from "../../backends/language-model.js";
import type { FastChatAnswer, FastChatQuestion } from "../data/fastchat.js";
import { type EvalResult, evalResultHead, runEvalItems } from "../eval-result.js";
import { indexAnswers } from "./answer-index.js";
import { callJudge } from "./judge-cache.js";
import { pairwiseMessages } from "./judge-prompts.js";
import { defaultJudgeSampling, type JudgeOptions, judgedTurns, openJudgeCache } from "./judge-single.js";
import { parseVerdict, type Verdict } from "./parse-judgment.js";

export interface JudgePairwiseOptions extends JudgeOptions {
  /** Answers of the model under test. */
  answers: readonly FastChatAnswer[];
  modelId?: string;
  /** Answers of the model compared against. */
  baselineAnswers: readonly FastChatAnswer[];
  baselineModelId?: string;
}

export type PairwiseOutcome = "win" | "loss" | "tie";

export interface PairwiseGame {
  /** Who is shown as A: the model under test ("model") or the baseline. */
  first: "model" | "baseline";
  messages: ChatMessage[];
  judgment: string;
  verdict: Verdict | null;
  /** The verdict seen from the model under test. */
  outcome: PairwiseOutcome | null;
  parseError?: string;
  cached: boolean;
}

export interface PairwiseJudgment {
  questionId: string | number;
  category?: string;
  turn: number;
  games: [PairwiseGame, PairwiseGame];
  /** Combined outcome for the model under test; "unparsed" when a game's verdict could not be read. */
  outcome: PairwiseOutcome | "unparsed";
  /** The two games disagreed (counted as a tie). */
  inconsistent: boolean;
}

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
    const items = await runEvalItems(
      task,
      jobs,
      judge,
      options,
      async (job, signal): Promise<PairwiseJudgment> => {
        const games = [] as PairwiseGame[];
        for (const game of job.games) {
          const { output, cached } = await callJudge(judge, game.messages, cache, { ...sampling, signal });
          const parsed = parseVerdict(output);
          games.push({
            first: game.first,
            messages: game.messages,
            judgment: output,
            verdict: parsed.ok ? parsed.verdict : null,
            outcome: parsed.ok ? outcomeOf(parsed.verdict, game.first) : null,
            ...(parsed.ok ? {} : { parseError: parsed.reason }),
            cached,
          });
        }
        const [game1, game2] = games as [PairwiseGame, PairwiseGame];
        return {
          questionId: job.question.question_id,
          ...(job.question.category ? { category: job.question.category } : {}),
          turn: job.turn,
          games: [game1, game2],
          ...combineGames(game1.outcome, game2.outcome),
        };
      },
      (item) => item.outcome !== "unparsed",
    );
    return {
      ...evalResultHead(task, options, model.modelId, judge.id),
      settings: {
        modelId: model.modelId,
        baselineModelId: baseline.modelId,
        judgeSampling: sampling,
        protocol:
          "each turn judged with both orders; disagreement = tie; unparsed games reported, not counted in rates",
      },
      aggregate: pairwiseAggregate(items, missingAnswers),
      items,
      warnings,
    };
  } finally {
    if (owned) cache.close();
  }
}

export function pairwiseAggregate(items: readonly PairwiseJudgment[], missingAnswers = 0): EvalResult["aggregate"] {
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
    cached: items.reduce((sum, item) => sum + item.games.filter((game) => game.cached).length, 0),
    winRate: rate(wins),
    tieRate: rate(ties),
    lossRate: rate(losses),
    /** (wins + ties/2) / decided. */
    score: rate(wins + ties / 2),
  };
}
