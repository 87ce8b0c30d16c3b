/**
 * How a chat turn is shown to a model prompted with raw text (method-spec A.7): system text, then
 * "### User\n{message}\n\n### {Assistant}\n". The default is a plain, documented template; pass the constitution's
 * assistant (`promptTemplateFromAssistant`) to evaluate an engraved model in the format it was trained on.
 */
import type { Assistant } from "../constitution/constitution-schema.js";
import { assistantMarker, type PromptStyle, systemText, USER_TURN_MARKER } from "../stages/engrave/prompt.js";

export interface PromptTemplate {
  /** Text before the first user turn (ends with its own separator). */
  system: string;
  /** Put before each user message. */
  user: string;
  /** Put after each user message; the assistant's answer follows it directly. */
  assistant: string;
  /** Put after an assistant answer before the next user turn. */
  turnSeparator: string;
  /** Stop strings for generation (the next user turn). */
  stop: string[];
}

/**
 * The plain template used when no constitution is given:
 * `"A conversation between a user and an AI assistant. ...\n\n### User\n{message}\n\n### Assistant\n"`.
 */
export const plainPromptTemplate: PromptTemplate = {
  system:
    "A conversation between a curious user and an AI assistant. The assistant gives helpful, honest and harmless " +
    "answers to the user's questions.\n\n",
  user: "### User\n",
  assistant: "\n\n### Assistant\n",
  turnSeparator: "\n\n",
  stop: ["### User"],
};

/**
 * The inference format of an engraved model (method-spec A.7), built from the engrave stage's own pieces so the
 * two cannot drift: the constitution's concise prompt (or the verbose teacher prompt, whose assistant marker is
 * "### {name} (extensive)"), which ends with "### User"; then the message, a blank line and "### {name}".
 */
export function promptTemplateFromAssistant(assistant: Assistant, style: PromptStyle = "concise"): PromptTemplate {
  const full = systemText(assistant, style);
  const system = full.endsWith(USER_TURN_MARKER) ? full.slice(0, -USER_TURN_MARKER.length) : full;
  return {
    system: system.endsWith("\n") || system === "" ? system : `${system}\n\n`,
    user: `${USER_TURN_MARKER}\n`,
    assistant: `\n\n${assistantMarker(assistant, style)}\n`,
    turnSeparator: "\n\n",
    stop: [USER_TURN_MARKER],
  };
}

export interface ChatTurn {
  user: string;
  /** The assistant's answer; omitted on the last turn, which the model is to answer. */
  assistant?: string;
}

/**
 * Render a conversation; the result ends with the assistant marker when the last turn has no answer. `examples` are
 * finished exchanges shown first (few-shot), each followed by the turn separator.
 */
export function renderChatPrompt(
  template: PromptTemplate,
  turns: readonly ChatTurn[],
  examples: readonly Required<ChatTurn>[] = [],
): string {
  let text = template.system;
  for (const example of examples)
    text += `${template.user}${example.user}${template.assistant}${example.assistant}${template.turnSeparator}`;
  turns.forEach((turn, index) => {
    if (index > 0) text += template.turnSeparator;
    text += `${template.user}${turn.user}${template.assistant}`;
    if (turn.assistant !== undefined) text += turn.assistant;
  });
  return text;
}

/** Clean a generated answer as Dromedary's inference does: cut at a stop string, strip, drop a dangling "#"-run. */
export function cleanAnswer(text: string, template: PromptTemplate): string {
  let answer = text;
  for (const stop of template.stop) {
    const at = answer.indexOf(stop);
    if (at !== -1) answer = answer.slice(0, at);
  }
  answer = answer.trim();
  return answer.replace(/\n\n#{1,3}$/, "").trim();
}
