/**
 * The inference / training prompt format of the engraved assistant (method-spec A.5 and A.7): a system block that
 * ends with "### User", the user's message, then "### {name}" and the answer. Principles, exemplars and internal
 * thoughts never appear here: that is what "engraving" means.
 */
import type { Assistant } from "../../constitution/index.js";
import { constitutionTextValues, renderConstitutionText } from "../../constitution/index.js";

export const promptStyles = ["concise", "verbose"] as const;
export type PromptStyle = (typeof promptStyles)[number];

/** The marker that ends an assistant turn; at inference it is the stop string. */
export const USER_TURN_MARKER = "### User";

/** The rendered system text of a style. Ends with "### User" so the message starts on the next line. */
export function systemText(assistant: Assistant, style: PromptStyle): string {
  const template = style === "verbose" ? assistant.verbosePrompt : assistant.concisePrompt;
  return renderConstitutionText(template, constitutionTextValues(assistant, "inference")).trimEnd();
}

/** The assistant's turn marker: "### {name}", or "### {name} (extensive)" for the verbose teacher. */
export function assistantMarker(assistant: Assistant, style: PromptStyle): string {
  return style === "verbose" ? `### ${assistant.name} (extensive)` : `### ${assistant.name}`;
}

/** The user's message as the format joins instruction and input: a blank line between them. */
export function userMessage(instruction: string, input = ""): string {
  return input.trim() ? `${instruction.trim()}\n\n${input.trim()}` : instruction.trim();
}

/**
 * The prompt up to and including the assistant marker, with no trailing newline:
 * `{system}\n{instruction}\n\n[{input}\n\n]### {name}`. The answer then starts with "\n".
 */
export function chatPrompt(assistant: Assistant, style: PromptStyle, instruction: string, input = ""): string {
  return `${systemText(assistant, style)}\n${userMessage(instruction, input)}\n\n${assistantMarker(assistant, style)}`;
}

/** Multi-turn history in the same format (at most `maxTurns` of the latest turns are kept, as the reference does). */
export function chatPromptFromMessages(
  assistant: Assistant,
  style: PromptStyle,
  messages: Array<{ role: "user" | "assistant"; content: string }>,
  maxTurns = 10,
): string {
  const recent = messages.slice(-(2 * maxTurns - 1));
  let text = systemText(assistant, style);
  for (const message of recent) {
    text +=
      message.role === "user"
        ? `\n${message.content.trim()}\n\n${assistantMarker(assistant, style)}`
        : `\n${message.content.trim()}\n\n${USER_TURN_MARKER}`;
  }
  return text;
}

/** Cut a generated answer at the next user turn and drop a dangling partial marker ("\n\n#", "##", "###"). */
export function cleanAnswer(text: string): string {
  const cut = text.split(USER_TURN_MARKER)[0] ?? "";
  return cut.replace(/\n\n#{1,3}\s*$/, "").trim();
}
