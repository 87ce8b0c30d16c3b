/**
 * Stage 2 post-processing and named filters (method-spec A.4), in the reference order: thought opening, answer
 * marker, repeated-segment cut, end of turn (cut at the next user turn; a length-truncated answer loses its last
 * word), minimum length, copy of the instruction, exemplar leakage, apology start, empty. Then the generation name
 * is replaced by the assistant's name.
 */
import type { FinishReason } from "../../backends/language-model.js";
import { constitutionTextValues, renderConstitutionText } from "../../constitution/render-constitution-text.js";
import { cutRepeatedSegments, findBlacklistedSubstring } from "../../text/filters.js";
import type { FilterRejection } from "../self-instruct/filters.js";
import { splitThoughtsAndAnswer } from "./parse.js";
import { type SelfAlignConstitution, turnMarkers } from "./prompt.js";

export const selfAlignFilterNames = [
  "context-overflow",
  "thought-opening",
  "answer-marker",
  "min-length",
  "copy-of-instruction",
  "exemplar-leakage",
  "starts-with-apology",
  "empty",
] as const;
export type SelfAlignFilterName = (typeof selfAlignFilterNames)[number];

/** Appended to an answer that ended its turn when the reference measured its length. */
export const endOfTurnMarker = "\n\n### User\n";

export interface SelfAlignFilterOptions {
  /** Fewest characters of an answer that ended its turn, measured with {@link endOfTurnMarker} appended as the
   * reference did. Default 160. */
  minLength?: number;
  /** Instruction or input longer than this that appears verbatim in the answer rejects it. Default 16. */
  copyMinLength?: number;
  /** Extra substrings that reject an answer. */
  extraBlacklist?: readonly string[];
  /** Filters to skip, by name. */
  disabled?: readonly SelfAlignFilterName[];
}

export interface SelfAlignOutput {
  thoughts: string;
  /** The answer, cleaned, with the generation name replaced by the assistant's name. */
  output: string;
  /** The answer ended its turn (the model moved on to the next user turn or stopped by itself). */
  endedTurn: boolean;
  /** The answer hit the token limit; its last (possibly partial) word was dropped. */
  truncated: boolean;
  /** A repeated segment was cut away. */
  repeatCut: boolean;
}

export type SelfAlignFilterResult =
  | { ok: true; value: SelfAlignOutput }
  | ({ ok: false; thoughts: string; answer?: string } & FilterRejection<SelfAlignFilterName>);

/**
 * Substrings that betray copying from the exemplars: the turn markers, the exemplars' closing lines, their inputs,
 * the multi-word proper names they mention, and the first sentence of each exemplar answer.
 */
export function buildLeakageBlacklist(constitution: SelfAlignConstitution): string[] {
  const { assistant } = constitution;
  const values = constitutionTextValues(assistant, "generation");
  const render = (text: string) => renderConstitutionText(text, values).trim();
  const markers = turnMarkers(assistant.generationName);
  const names = new Set([assistant.name, assistant.generationName, ...render(assistant.developer).split(/\s+/)]);
  const list = new Set<string>([markers.user, markers.autoReply]);
  for (const exemplar of constitution.exemplars) {
    list.add(render(exemplar.closing.user));
    list.add(render(exemplar.closing.reply));
    for (const turn of exemplar.turns) {
      if (turn.input !== undefined) list.add(render(turn.input).split("\n")[0]!.trim());
      for (const text of [turn.user, turn.answer]) {
        const rendered = render(text);
        for (const match of rendered.matchAll(/\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+\b/g)) {
          let words = match[0].split(/\s+/);
          // A run that opens a sentence starts with an ordinary capitalised word ("Ask", "The"): leave it out.
          const before = rendered.slice(0, match.index).trimEnd();
          if (before === "" || /[.!?:]$/.test(before)) words = words.slice(1);
          words = words.filter((word) => !names.has(word));
          if (words.length >= 2) list.add(words.join(" "));
        }
      }
      const firstSentence = render(turn.answer)
        .split(/(?<=[.!?])\s/)[0]!
        .trim();
      if (firstSentence.length >= 24) list.add(firstSentence);
    }
  }
  return [...list].filter((entry) => entry.length > 0);
}

export interface FilterSelfAlignContext {
  constitution: SelfAlignConstitution;
  instruction: string;
  input: string;
  /** From {@link buildLeakageBlacklist}; computed when absent. */
  blacklist?: readonly string[];
  options?: SelfAlignFilterOptions;
}

/** Apply the stage-2 post-processing and filters to one raw completion (the text after the thoughts cue). */
export function filterSelfAlignCompletion(
  completion: string,
  finishReason: FinishReason,
  context: FilterSelfAlignContext,
): SelfAlignFilterResult {
  const { constitution, instruction, input } = context;
  const options = context.options ?? {};
  const disabled = new Set(options.disabled ?? []);
  const { assistant } = constitution;
  const markers = turnMarkers(assistant.generationName);
  const opening = renderConstitutionText(assistant.thoughtOpening, constitutionTextValues(assistant, "generation"));
  const raw = completion.trimStart();
  const split = splitThoughtsAndAnswer(raw, markers.answer);
  const reject = (filter: SelfAlignFilterName, reason: string, answer?: string): SelfAlignFilterResult => ({
    ok: false,
    thoughts: split.thoughts,
    ...(answer === undefined ? {} : { answer }),
    filter,
    reason,
  });

  if (!disabled.has("thought-opening") && !raw.startsWith(opening)) {
    return reject("thought-opening", `internal thoughts do not start with "${opening}"`);
  }
  if (split.answer === undefined) {
    return reject("answer-marker", `no "\\n\\n${markers.answer}" answer after the internal thoughts`);
  }
  let answer = split.answer.trim();
  const cut = cutRepeatedSegments(answer);
  answer = cut.text.trim();
  const repeatCut = cut.repeated !== undefined;

  const userTurn = `\n\n${markers.user}`;
  const turnAt = answer.indexOf(userTurn);
  // With "\n\nUser:" as a stop string the backend ends with "stop" before it; either way the turn is over.
  const endedTurn = turnAt >= 0 || finishReason === "stop";
  let truncated = false;
  if (turnAt >= 0) answer = answer.slice(0, turnAt).trim();
  if (endedTurn) {
    const minLength = options.minLength ?? 160;
    const measured = answer.length + endOfTurnMarker.length;
    if (!disabled.has("min-length") && measured < minLength) {
      return reject(
        "min-length",
        `answer has ${answer.length} characters (${measured} with the end-of-turn marker); at least ${minLength} required`,
        answer,
      );
    }
  } else {
    // Cut by the token limit: the last word is probably incomplete.
    const space = answer.lastIndexOf(" ");
    answer = space < 0 ? answer : answer.slice(0, space);
    truncated = true;
  }

  const copyMin = options.copyMinLength ?? 16;
  if (!disabled.has("copy-of-instruction")) {
    if (instruction.length > copyMin && answer.includes(instruction)) {
      return reject("copy-of-instruction", "the answer repeats the instruction verbatim", answer);
    }
    if (input.length > copyMin && answer.includes(input)) {
      return reject("copy-of-instruction", "the answer repeats the input verbatim", answer);
    }
  }
  if (!disabled.has("exemplar-leakage")) {
    const blacklist = [
      ...(context.blacklist ?? buildLeakageBlacklist(constitution)),
      ...(options.extraBlacklist ?? []),
    ];
    const hit = findBlacklistedSubstring(answer, blacklist);
    if (hit !== undefined) return reject("exemplar-leakage", `the answer contains "${hit}" from the examples`, answer);
  }
  if (!disabled.has("starts-with-apology") && /^(I'm sorry|I am sorry|I’m sorry|Sorry)\b/i.test(answer)) {
    return reject("starts-with-apology", "the answer starts with an apology", answer);
  }
  if (!disabled.has("empty") && answer.trim().length === 0) return reject("empty", "the answer is empty", answer);

  const output = answer.replaceAll(assistant.generationName, assistant.name);
  return { ok: true, value: { thoughts: split.thoughts, output, endedTurn, truncated, repeatCut } };
}
