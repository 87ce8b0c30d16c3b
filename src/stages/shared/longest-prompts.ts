/**
 * The longest prompt each generation stage of SELF-ALIGN builds from a constitution (the longest seed tasks as demos
 * and as the query, the longest seed questions): what `selfalign doctor` checks against the context, what
 * `selfalign run` checks before any work, and what `--estimate` counts. Generated instructions are stood in for by
 * the longest seed task, since they are not known before the run.
 */
import type { Constitution } from "../../constitution/index.js";
import { chatPrompt } from "../engrave/prompt.js";
import { buildQuestionPrompt } from "../red-team/questions.js";
import { buildTopicPrompt } from "../red-team/topics.js";
import { buildSelfAlignMetaPrompt, buildSelfAlignPrompt } from "../self-align/prompt.js";
import { buildSelfInstructPrompt } from "../self-instruct/prompt.js";

const longest = <T>(items: readonly T[], length: (item: T) => number, n: number): T[] =>
  [...items].sort((a, b) => length(b) - length(a)).slice(0, n);

const taskLength = (task: { instruction: string; input?: string }) =>
  task.instruction.length + (task.input?.length ?? 0);

/** The longest seed task, as a query (what a stage-1 prompt is expected to look like at most). */
export function longestQuery(constitution: Constitution): { instruction: string; input: string } {
  const task = longest(constitution.seedTasks, taskLength, 1)[0];
  return { instruction: task?.instruction ?? "Explain.", input: task?.input ?? "" };
}

/** Stage 1a with `demos` demo tasks, the longest ones. */
export function longestSelfInstructPrompt(constitution: Constitution, demos = 5): string {
  return buildSelfInstructPrompt(longest(constitution.seedTasks, taskLength, demos));
}

function typedSeeds(constitution: Constitution) {
  return constitution.redTeamTypes.map((type) => ({
    label: type.label,
    topic: type.seedTopic,
    question: type.seedQuestion,
  }));
}

/** Stage 1b's question prompt: the `seeds` longest seed questions and `targets` (type, topic) pairs. */
export function longestQuestionPrompt(constitution: Constitution, seeds = 5, targets = 5): string {
  const typed = typedSeeds(constitution);
  return buildQuestionPrompt(
    longest(typed, (seed) => seed.question.length, seeds),
    longest(typed, (seed) => seed.label.length + seed.topic.length, targets).map(({ label, topic }) => ({
      label,
      topic,
    })),
  );
}

/** Stage 1b's topic prompt: the longest type label, with 5 topics shown (as once a type has 10). */
export function longestTopicPrompt(constitution: Constitution): string {
  const typed = typedSeeds(constitution);
  const label = longest(typed, (seed) => seed.label.length, 1)[0]?.label ?? "questions";
  return buildTopicPrompt(
    label,
    longest(typed, (seed) => seed.topic.length, 5).map((seed) => seed.topic),
  );
}

/** Stage 2's meta-prompt alone (shared by every request, so a prefix cache evaluates it once). */
export function selfAlignMetaPrompt(constitution: Constitution): string {
  return buildSelfAlignMetaPrompt(constitution);
}

/** Stage 2: the meta-prompt and the longest query. */
export function longestSelfAlignPrompt(constitution: Constitution): string {
  const query = longestQuery(constitution);
  return buildSelfAlignPrompt(
    buildSelfAlignMetaPrompt(constitution),
    constitution.assistant.generationName,
    query.instruction,
    query.input || undefined,
  );
}

/** The engraved (chat) prompt in a style, around the longest query: the verbose-clone teacher's, and a training example's. */
export function longestChatPrompt(constitution: Constitution, style: "verbose" | "concise"): string {
  const query = longestQuery(constitution);
  return chatPrompt(constitution.assistant, style, query.instruction, query.input);
}

/**
 * The fixed part of each kind of prompt, with no demos, seeds, topics or query: a lower bound of every prompt of that
 * kind. When it and the new tokens cannot fit the context, every request of the kind would be rejected.
 */
export function fixedPromptParts(constitution: Constitution) {
  const shortestLabel =
    [...constitution.redTeamTypes].sort((a, b) => a.label.length - b.label.length)[0]?.label ?? "questions";
  return {
    selfInstruct: buildSelfInstructPrompt([]),
    question: buildQuestionPrompt([], []),
    topic: buildTopicPrompt(shortestLabel, []),
    selfAlign: buildSelfAlignMetaPrompt(constitution),
    chat: (style: "verbose" | "concise") => chatPrompt(constitution.assistant, style, ""),
  };
}
