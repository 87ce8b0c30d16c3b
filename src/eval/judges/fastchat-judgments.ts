/** Our judgements in FastChat's judgment jsonl format, so its show_result tooling reads them unchanged. */
import type { FastChatPairwiseJudgment, FastChatSingleJudgment } from "../data/fastchat.js";
import type { EvalResult } from "../eval-result.js";
import type { PairwiseJudgment, PairwiseOutcome } from "./judge-pairwise.js";
import type { SingleJudgment } from "./judge-single.js";

const tstamp = (result: EvalResult) => Date.parse(result.createdAt) / 1000;

/** Single-answer judgements; an unparsed rating is written as FastChat does, score -1. */
export function toFastChatSingleJudgments(result: EvalResult<SingleJudgment>): FastChatSingleJudgment[] {
  return result.items.map((item) => ({
    question_id: item.questionId,
    model: result.model.id,
    judge: [result.judge?.id ?? "unknown", "selfalign-single-v1"],
    user_prompt: item.messages.find((message) => message.role === "user")?.content ?? "",
    judgment: item.judgment,
    score: item.rating ?? -1,
    turn: item.turn,
    tstamp: tstamp(result),
  }));
}

/** Winner of a game in FastChat's terms: model_1 is the model under test, model_2 the baseline. */
function winner(outcome: PairwiseOutcome | null): string {
  return outcome === null ? "error" : outcome === "win" ? "model_1" : outcome === "loss" ? "model_2" : "tie";
}

export function toFastChatPairwiseJudgments(result: EvalResult<PairwiseJudgment>): FastChatPairwiseJudgment[] {
  const baseline = String(result.settings.baselineModelId ?? "baseline");
  return result.items.map((item) => {
    const [game1, game2] = item.games;
    const prompt = (game: typeof game1) => game.messages.find((message) => message.role === "user")?.content ?? "";
    return {
      question_id: item.questionId,
      model_1: result.model.id,
      model_2: baseline,
      g1_winner: winner(game1.outcome),
      g2_winner: winner(game2.outcome),
      judge: [result.judge?.id ?? "unknown", "selfalign-pair-v1"],
      g1_user_prompt: prompt(game1),
      g1_judgment: game1.judgment,
      g2_user_prompt: prompt(game2),
      g2_judgment: game2.judgment,
      turn: item.turn,
      tstamp: tstamp(result),
    };
  });
}
