/**
 * Stage 4 (verbose cloning) post-filter, method-spec A.6: keep the teacher's answer up to its end-of-turn marker,
 * cut repeated segments (backticks count as delimiters here), cap numbered lists at 12 items, and drop short
 * unfinished answers and "bad examples" that copy the teacher prompt or wander into encyclopedia sections.
 */
import type { Assistant } from "../../constitution/index.js";
import type { FinishReason } from "../../backends/language-model.js";
import { cutRepeatedSegments, findBlacklistedSubstring } from "../../text/filters.js";
import { renameAssistant } from "../engrave/build-sft.js";
import { assistantMarker, systemText } from "../engrave/prompt.js";

export const verboseFilterNames = ["empty", "min-length", "bad-example"] as const;
export type VerboseFilterName = (typeof verboseFilterNames)[number];

export type VerboseFilterResult =
  | { kept: true; output: string; ended: boolean; repeatCut: boolean }
  | { kept: false; filter: VerboseFilterName; reason: string; output: string };

export interface VerboseFilterOptions {
  /** Shortest unfinished answer kept, in characters. Default 128. */
  minLength?: number;
  /** Longest numbered list kept: the answer is cut before item `maxListItems + 1`. Default 12. */
  maxListItems?: number;
}

/** Phrases whose presence marks a bad example: wiki sections, the teacher's mode name, its self-description. */
export function verboseBlacklist(assistant: Assistant): string[] {
  const system = systemText(assistant, "verbose");
  const marker = `${assistantMarker(assistant, "verbose")}\n`;
  const example = system.includes(marker) ? system.slice(system.indexOf(marker) + marker.length) : "";
  const firstSentence = example.split(/(?<=[.!?])\s/)[1]?.trim(); // the self-description after the greeting
  return [
    "## See also",
    "## External links",
    `${assistant.name} (extensive)`,
    ...(firstSentence ? [firstSentence] : []),
  ];
}

export function filterVerboseAnswer(
  text: string,
  finishReason: FinishReason,
  assistant: Assistant,
  options: VerboseFilterOptions = {},
): VerboseFilterResult {
  const minLength = options.minLength ?? 128;
  const maxListItems = options.maxListItems ?? 12;
  const ended = finishReason === "stop";
  // An unfinished answer loses its last (probably cut) word.
  let output = ended ? text.trim() : text.trim().replace(/\s*\S+$/, "");
  const repeat = cutRepeatedSegments(output, { extraDelimiters: "`" });
  output = repeat.text.trim();
  const listCut = output.indexOf(`\n${maxListItems + 1}. `);
  if (listCut >= 0) output = output.slice(0, listCut).trim();
  output = renameAssistant(output, assistant);
  if (!output) return { kept: false, filter: "empty", reason: "the teacher's answer is empty after cleaning", output };
  if (!ended && output.length < minLength) {
    return {
      kept: false,
      filter: "min-length",
      reason: `unfinished answer has ${output.length} characters, minimum ${minLength}`,
      output,
    };
  }
  const bad = findBlacklistedSubstring(output, verboseBlacklist(assistant));
  if (bad) return { kept: false, filter: "bad-example", reason: `contains "${bad}"`, output };
  return { kept: true, output, ended, repeatCut: repeat.repeated !== undefined };
}
