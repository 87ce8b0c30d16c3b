/**
 * Stage 3 (principle engraving), data part: turn self-aligned records into SFT examples with the principles,
 * exemplars and internal thoughts removed (method-spec A.5). The loss covers "\n" + answer, plus the end-of-turn
 * marker when the answer ended by itself, so the engraved model learns to stop by writing "### User".
 */
import type { Assistant } from "../../constitution/index.js";
import { constitutionTextValues, renderConstitutionText } from "../../constitution/index.js";
import { recordId } from "../../run-store/index.js";
import type { SftExample } from "../../training/trainer.js";
import { chatPrompt, type PromptStyle, systemText, USER_TURN_MARKER, userMessage } from "./prompt.js";

/** What engraving needs of a stage-2 record. */
export interface AnswerRecord {
  id: string;
  instruction: string;
  input?: string;
  output: string;
  /** True when the answer ended by itself (not cut by the token limit). */
  ended: boolean;
}

/** One example of the engraving set, in every format we export. */
export interface SftRecord extends SftExample {
  id: string;
  parentId?: string;
  /** "self-align" or "identity". */
  source: string;
  instruction: string;
  input: string;
  output: string;
  style: PromptStyle;
}

/** Replace the stage-2 name of the assistant by its real name (method-spec A.4 step 9). */
export function renameAssistant(text: string, assistant: Assistant): string {
  if (!assistant.generationName || assistant.generationName === assistant.name) return text;
  return text.split(assistant.generationName).join(assistant.name);
}

export function toSftRecord(record: AnswerRecord, assistant: Assistant, style: PromptStyle = "concise"): SftRecord {
  const output = renameAssistant(record.output.trim(), assistant);
  const input = record.input?.trim() ?? "";
  return {
    id: recordId("engrave", record.id, style),
    parentId: record.id,
    source: "self-align",
    instruction: record.instruction,
    input,
    output,
    style,
    prompt: chatPrompt(assistant, style, record.instruction, input),
    completion: `\n${output}${record.ended ? `\n\n${USER_TURN_MARKER}\n` : ""}`,
  };
}

/** The constitution's "who are you" exchanges, in the same format (the reference's dummy identity data). */
export function identityRecords(assistant: Assistant, style: PromptStyle = "concise"): SftRecord[] {
  const values = constitutionTextValues(assistant, "inference");
  return assistant.identity.map((exchange, index) => {
    const output = renderConstitutionText(exchange.answer, values).trim();
    return {
      id: recordId("engrave-identity", index, exchange.user, style),
      source: "identity",
      instruction: exchange.user,
      input: "",
      output,
      style,
      prompt: chatPrompt(assistant, style, exchange.user),
      completion: `\n${output}\n\n${USER_TURN_MARKER}\n`,
    };
  });
}

/** Alpaca JSONL row. */
export function toAlpaca(record: SftRecord): { instruction: string; input: string; output: string } {
  return { instruction: record.instruction, input: record.input, output: record.output };
}

/** Chat SFT row (`messages` with system / user / assistant). */
export function toMessages(
  record: SftRecord,
  assistant: Assistant,
): { messages: Array<{ role: string; content: string }> } {
  const system = systemText(assistant, record.style)
    .replace(new RegExp(`\\n*${USER_TURN_MARKER}\\s*$`), "")
    .trim();
  return {
    messages: [
      { role: "system", content: system },
      { role: "user", content: userMessage(record.instruction, record.input) },
      { role: "assistant", content: record.output },
    ],
  };
}
