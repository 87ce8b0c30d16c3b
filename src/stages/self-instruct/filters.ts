/**
 * Named filters of stage 1a (method-spec A.2), applied in order: word count, keyword blacklist, punctuation start,
 * non-ASCII start. The ROUGE-L dedup (`rouge-dedup`) runs last, in the runner, against the whole pool.
 */
import { findBlacklistedWord, startsWithNonAscii, startsWithPunctuation, wordCount } from "../../text/filters.js";

export const selfInstructFilterNames = [
  "parse",
  "word-count",
  "keyword-blacklist",
  "punctuation-start",
  "non-ascii-start",
  "rouge-dedup",
  "context-overflow",
] as const;
export type SelfInstructFilterName = (typeof selfInstructFilterNames)[number];

/** Tasks a text-only model cannot do (images, files, drawing, going places, sound). Matched as whole words. */
export const defaultTaskBlacklist = [
  "image",
  "images",
  "graph",
  "graphs",
  "picture",
  "pictures",
  "file",
  "files",
  "map",
  "maps",
  "draw",
  "plot",
  "go to",
  "video",
  "audio",
  "music",
  "flowchart",
  "diagram",
] as const;

export interface SelfInstructFilterOptions {
  /** Fewest words an instruction may have. Default 4 (the reference drops <= 3). */
  minWords?: number;
  /** Most words an instruction may have. Default 150. */
  maxWords?: number;
  /** Whole-word keywords that reject a task (instruction or input). Default {@link defaultTaskBlacklist}. */
  blacklist?: readonly string[];
  /** Filters to skip, by name. Default none. */
  disabled?: readonly SelfInstructFilterName[];
}

export interface FilterRejection<Name extends string = string> {
  filter: Name;
  reason: string;
}

/** The first filter that rejects the task, or undefined when it passes them all (dedup aside). */
export function filterSelfInstructTask(
  task: { instruction: string; input: string },
  options: SelfInstructFilterOptions = {},
): FilterRejection<SelfInstructFilterName> | undefined {
  const disabled = new Set(options.disabled ?? []);
  const minWords = options.minWords ?? 4;
  const maxWords = options.maxWords ?? 150;
  const { instruction, input } = task;
  if (!disabled.has("word-count")) {
    const words = wordCount(instruction);
    if (words < minWords || words > maxWords) {
      return { filter: "word-count", reason: `instruction has ${words} words; allowed ${minWords}..${maxWords}` };
    }
  }
  if (!disabled.has("keyword-blacklist")) {
    const blacklist = options.blacklist ?? defaultTaskBlacklist;
    const hit = findBlacklistedWord(instruction, blacklist) ?? findBlacklistedWord(input, blacklist);
    if (hit !== undefined) {
      return { filter: "keyword-blacklist", reason: `mentions "${hit}", a task a text-only model cannot do` };
    }
  }
  if (!disabled.has("punctuation-start") && startsWithPunctuation(instruction)) {
    return { filter: "punctuation-start", reason: `instruction starts with punctuation "${instruction[0]}"` };
  }
  if (!disabled.has("non-ascii-start") && startsWithNonAscii(instruction)) {
    return { filter: "non-ascii-start", reason: `instruction starts with non-ASCII character "${instruction[0]}"` };
  }
  return undefined;
}
