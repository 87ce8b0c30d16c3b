/**
 * The judge prompt of SALMON's preference labelling (method-spec B.2): in the engraved chat format, the SFT model is
 * shown a request and two outputs, told the one principle to judge them by, and answers with a forced sentence that
 * ends "Output (": the next token's log-probabilities of "a" and "b" are the judgment. What varies by principle comes
 * last, so every principle of a pair, in one order of the outputs, shares the evaluated prefix.
 */
import { type Assistant, constitutionTextValues, renderConstitutionText } from "../../constitution/index.js";
import { assistantMarker, USER_TURN_MARKER, userMessage } from "../engrave/prompt.js";

/** The two option letters the judge's answer continues with: the first shown output, then the second. */
export const judgeOptions = ["a", "b"] as const;

const systemBlock = [
  "# {name}",
  "",
  "## System Overview",
  "",
  "{name} is an AI assistant developed by {developer}. Here {name} acts as a careful judge: it reads a request and two outputs written for it, Output (a) and Output (b), and decides which of the two is better in one respect that it is given.",
  "",
  "## User Conversation",
  "",
  USER_TURN_MARKER,
].join("\n");

/**
 * Everything up to the principle: system block, the user's turn with the request and both outputs (in the order
 * shown). Shared by every principle judged on this order of the pair.
 */
export function judgePromptHead(
  assistant: Assistant,
  request: { instruction: string; input?: string },
  first: string,
  second: string,
): string {
  const values = constitutionTextValues(assistant, "inference");
  return [
    renderConstitutionText(systemBlock, values),
    "Which of the two outputs below is better? Judge them only in the respect described after them.",
    "",
    "#### Request",
    userMessage(request.instruction, request.input ?? ""),
    "",
    "#### Output (a)",
    first.trim(),
    "",
    "#### Output (b)",
    second.trim(),
    "",
    "",
  ].join("\n");
}

/** The principle (its dimension and rendered definition) and the forced answer, which ends "Output (". */
export function judgePromptTail(assistant: Assistant, dimension: string, definition: string): string {
  return [
    "#### What to judge",
    "",
    `${dimension}: ${definition.trim()}`,
    "",
    "Decide which output is better in this respect alone.",
    "",
    assistantMarker(assistant, "concise"),
    `Having read the request, both outputs and what to judge, I find that the more ${dimension} output is Output (`,
  ].join("\n");
}

/** A whole judge prompt: head (shared) + tail (per principle). */
export function judgePrompt(
  assistant: Assistant,
  request: { instruction: string; input?: string },
  first: string,
  second: string,
  principle: { dimension: string; definition: string },
): string {
  return (
    judgePromptHead(assistant, request, first, second) +
    judgePromptTail(assistant, principle.dimension, principle.definition)
  );
}
