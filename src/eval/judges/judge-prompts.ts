/**
 * Our own judge prompts for single-answer grading (1-10) and pairwise comparison, in the spirit of FastChat's
 * llm_judge protocol (explain, then give the verdict in double brackets). For a second turn the whole conversation
 * is shown and only the assistant's answer to the last question is judged.
 */
import type { ChatMessage } from "../../backends/language-model.js";

export const judgeSystemPrompt =
  "You are a fair and careful judge of answers written by AI assistants. You follow the requested output format.";

export interface JudgedTurn {
  question: string;
  answer: string;
}

function conversation(turns: readonly JudgedTurn[], label = "Assistant"): string {
  return turns
    .map(
      (turn, index) => `[User, turn ${index + 1}]\n${turn.question}\n\n[${label}, turn ${index + 1}]\n${turn.answer}`,
    )
    .join("\n\n");
}

function referenceBlock(reference: string | undefined): string {
  return reference ? `[Reference answer to the last question]\n${reference}\n\n` : "";
}

/** Messages asking the judge to rate the assistant's answer to the last turn from 1 to 10. */
export function singleGradeMessages(turns: readonly JudgedTurn[], reference?: string): ChatMessage[] {
  const which =
    turns.length > 1 ? `the assistant's answer to the last question (turn ${turns.length})` : "the assistant's answer";
  const user =
    `Rate ${which} below. Judge how helpful, relevant, accurate, deep and detailed it is` +
    `${reference ? ", and check it against the reference answer" : ""}. Do not let its length sway you. ` +
    "First explain your assessment in a few sentences, then give a rating from 1 (worst) to 10 (best) in exactly " +
    'this form: "Rating: [[5]]".\n\n' +
    `${referenceBlock(reference)}${conversation(turns)}`;
  return [
    { role: "system", content: judgeSystemPrompt },
    { role: "user", content: user },
  ];
}

/** Messages asking the judge to compare assistant A's and B's answers to the last turn. */
export function pairwiseMessages(
  turnsA: readonly JudgedTurn[],
  turnsB: readonly JudgedTurn[],
  reference?: string,
): ChatMessage[] {
  const which = turnsA.length > 1 ? `to the last question (turn ${turnsA.length})` : "to the question";
  const user =
    `Two AI assistants, A and B, answered the same user. Decide which assistant's answer ${which} is better: more ` +
    `helpful, relevant, accurate, deep and detailed${reference ? ", and consistent with the reference answer" : ""}. ` +
    "Neither the order in which they are shown, nor their length, nor their names may influence you. First explain " +
    'your comparison briefly, then give your verdict in exactly this form: "[[A]]" if A is better, "[[B]]" if B is ' +
    'better, or "[[C]]" for a tie.\n\n' +
    `${referenceBlock(reference)}=== Assistant A's conversation ===\n${conversation(turnsA, "Assistant A")}\n\n` +
    `=== Assistant B's conversation ===\n${conversation(turnsB, "Assistant B")}`;
  return [
    { role: "system", content: judgeSystemPrompt },
    { role: "user", content: user },
  ];
}
