/**
 * I-SHEEP's heuristic filters, named, in the reference's order: the checks its instruction synthesis adds to
 * stage 1a's (method-spec C.1), and the rule filter on (prompt, answer) pairs (C.3). Three of the reference's rules
 * were broader than their purpose (pitfall C.9.4); ours are narrowed, and each narrowed rule's reason says how.
 */
import type { FilterRejection } from "../self-instruct/filters.js";

/** Filters the prompts stage adds after stage 1a's (and before the ROUGE-L dedup). */
export const promptFilterNames = ["noinput-leak", "merged-items", "url"] as const;
export type PromptFilterName = (typeof promptFilterNames)[number];

const noInput = /no\s?input/i;

/** The first C.1 addition that rejects a generated task, or undefined. */
export function filterGeneratedTask(task: {
  instruction: string;
  input: string;
}): FilterRejection<PromptFilterName> | undefined {
  const { instruction, input } = task;
  if (noInput.test(input) || /noinput/i.test(instruction)) {
    return { filter: "noinput-leak", reason: 'the task mentions "noinput" outside the input placeholder' };
  }
  if (/.\s+(Instruction|Input):/.test(instruction) || /.\s+(Instruction|Input|Output):/.test(input)) {
    return { filter: "merged-items", reason: "an item label inside the task: two list items ran together" };
  }
  if (/https?:/i.test(instruction) || /https?:/i.test(input)) {
    return { filter: "url", reason: "the task holds a URL" };
  }
  return undefined;
}

/** The rule filter's names, in the order they are applied (method-spec C.3). */
export const ruleFilterNames = [
  "role-marker",
  "answer-choices",
  "noinput-in-answer",
  "asks-back",
  "option-list",
  "cjk",
  "noinput-in-task",
  "tag-in-task",
  "placeholder-input",
  "input-in-instruction",
  "empty-answer",
] as const;
export type RuleFilterName = (typeof ruleFilterNames)[number];

export interface RuleFilterOptions {
  /** Rules to skip, by name. Default none. */
  disabled?: readonly RuleFilterName[];
}

export type RuleFilterResult =
  | { ok: true; output: string }
  | ({ ok: false; output: string } & FilterRejection<RuleFilterName>);

/** A label some models put before the answer ("答案:" in the reference; "Answer:" here too); removed, not rejected. */
const answerLabel = /^\s*(?:答案\s*[:：]|Answer\s*:)\s*/i;
const roleMarker = /\n\s*(assistant|system|human|question|output|user)\s*(:|\n)/i;
const askBack = /\n\n?\s*(can you|do you)\b/i;
/** A closing paragraph of at most 100 characters that is a question: the model asking the user back. */
const closingQuestion = /\n\s*\n[^\n]{1,100}\?\s*$/;
/** An option marker that opens a line: "A.", "b)", "(C)". */
const optionLine = /^\s*(?:\(([A-Ea-e])\)|([A-Ea-e])[.)])\s/gm;
const cjk = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]/;
const shortTag = /<[^<>\n]{1,20}>/;
/** Inputs that only say there is no input. */
const placeholderInputs = new Set(["none", "n/a", "na", "null", "nil", "nothing", "empty", "-", "—"]);

/** Distinct option letters that open lines of the text. */
function optionLetters(text: string): Set<string> {
  const letters = new Set<string>();
  for (const match of text.matchAll(optionLine)) letters.add((match[1] ?? match[2]!).toUpperCase());
  return letters;
}

/**
 * The rule filter on one pair: the cleaned answer when it passes, else the first rule that rejects it. The answer's
 * leading "答案:" / "Answer:" label is removed first.
 */
export function ruleFilterPair(
  pair: { instruction: string; input: string; output: string },
  options: RuleFilterOptions = {},
): RuleFilterResult {
  const disabled = new Set(options.disabled ?? []);
  const on = (name: RuleFilterName) => !disabled.has(name);
  const output = pair.output.replace(answerLabel, "").trim();
  const { instruction, input } = pair;
  const reject = (filter: RuleFilterName, reason: string): RuleFilterResult => ({ ok: false, output, filter, reason });
  const role = roleMarker.exec(output);
  if (on("role-marker") && role) {
    return reject(
      "role-marker",
      `the answer goes on with a "${role[1]}" turn: it is writing a dialogue, not answering`,
    );
  }
  if (on("answer-choices") && /Answer Choices:/i.test(output)) {
    return reject("answer-choices", 'the answer lists "Answer Choices:"');
  }
  if (on("noinput-in-answer") && noInput.test(output)) {
    return reject("noinput-in-answer", 'the answer mentions "noinput" (the prompt template leaked)');
  }
  if (on("asks-back")) {
    const asks = askBack.exec(output);
    if (asks) return reject("asks-back", `a new paragraph asks the user back ("${asks[1]}...")`);
    if (closingQuestion.test(output)) {
      return reject(
        "asks-back",
        "the answer ends with a short paragraph that is a question to the user (narrowed: the reference dropped any short question after a blank line, anywhere in the answer)",
      );
    }
  }
  if (on("option-list")) {
    const letters = optionLetters(output);
    if (letters.size >= 2) {
      return reject(
        "option-list",
        `the answer is a list of options (${[...letters].sort().join(", ")} open lines) (narrowed: markers count only at the start of a line and two are needed, so "e.g." and "a.m." pass; the reference matched a letter and a dot anywhere)`,
      );
    }
  }
  if (on("cjk") && cjk.test(output)) return reject("cjk", "the answer holds Chinese, Japanese or Korean characters");
  if (on("noinput-in-task") && (noInput.test(instruction) || noInput.test(input))) {
    return reject("noinput-in-task", 'the instruction or input mentions "noinput"');
  }
  const tag = shortTag.exec(instruction) ?? shortTag.exec(input);
  if (on("tag-in-task") && tag) return reject("tag-in-task", `the task holds the placeholder tag ${tag[0]}`);
  if (on("placeholder-input") && placeholderInputs.has(input.trim().toLowerCase())) {
    return reject(
      "placeholder-input",
      `the input is only "${input.trim()}" (narrowed: the whole input must be a placeholder; the reference dropped any task containing "none", "nonetheless" included)`,
    );
  }
  if (on("input-in-instruction") && input.trim() !== "" && instruction.includes(input.trim())) {
    return reject("input-in-instruction", "the input is repeated inside the instruction");
  }
  if (on("empty-answer") && output === "") return reject("empty-answer", "the answer is empty");
  return { ok: true, output };
}
