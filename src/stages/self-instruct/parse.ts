/**
 * Parse a self-instruct completion (method-spec A.2): the model continues a numbered `###`-separated task list,
 * so split on `###`, drop the last chunk when the completion was cut by the token limit, and read each chunk's
 * `N. Instruction:` and `N. Input:` parts. Tolerant of what base models emit: a missing input, `<noinput>` in any
 * case, a stray `N. Output:` part, wrong numbering, extra blank lines.
 */
import type { FinishReason } from "../../backends/language-model.js";

export type ParsedTask =
  | { ok: true; position: number; instruction: string; input: string }
  | { ok: false; position: number; reason: string; raw: string };

export interface ParseSelfInstructResult {
  tasks: ParsedTask[];
  /** Whether a final chunk was dropped as truncated. */
  droppedLast: boolean;
}

const partPattern = /(?:^|\n)\s*\d+\s*\.\s*(Instruction|Input|Output)\s*:/gi;

/**
 * Parse the completion of a prompt that ended with `{firstNumber}. Instruction:`. `position` counts chunks from 0.
 */
export function parseSelfInstruct(
  completion: string,
  finishReason: FinishReason,
  firstNumber: number,
): ParseSelfInstructResult {
  const raw = `${firstNumber}. Instruction:${completion}`;
  const chunks = raw.split("###");
  const droppedLast = finishReason !== "stop" && chunks.length > 0;
  if (droppedLast) chunks.pop();
  const tasks: ParsedTask[] = [];
  chunks.forEach((chunk, position) => {
    if (chunk.trim() === "") return;
    tasks.push(parseChunk(chunk, position));
  });
  return { tasks, droppedLast };
}

function parseChunk(chunk: string, position: number): ParsedTask {
  const parts: { label: string; start: number; end: number }[] = [];
  for (const match of chunk.matchAll(partPattern)) {
    parts.push({ label: match[1]!.toLowerCase(), start: match.index!, end: match.index! + match[0].length });
  }
  const text = (k: number) => chunk.slice(parts[k]!.end, parts[k + 1]?.start ?? chunk.length).trim();
  const instructionAt = parts.findIndex((part) => part.label === "instruction");
  if (instructionAt < 0) return { ok: false, position, reason: "no `N. Instruction:` line in the item", raw: chunk };
  if (chunk.slice(0, parts[instructionAt]!.start).trim() !== "") {
    return { ok: false, position, reason: "text before the `N. Instruction:` line", raw: chunk };
  }
  const instruction = text(instructionAt);
  if (instruction === "") return { ok: false, position, reason: "the instruction is empty", raw: chunk };
  if (parts.filter((part) => part.label === "instruction").length > 1) {
    return { ok: false, position, reason: "two instructions in one item (a missing `###`)", raw: chunk };
  }
  const inputAt = parts.findIndex((part) => part.label === "input");
  let input = inputAt < 0 ? "" : text(inputAt);
  if (/^<\s*no\s*input\s*>$/i.test(input)) input = "";
  return { ok: true, position, instruction, input };
}
