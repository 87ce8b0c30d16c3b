/**
 * Topic brainstorming for topic-guided red-teaming (method-spec A.3): per question type, ask the base model to
 * extend a numbered list of topics, keep short capitalised noun phrases, dedup per type and balance the types.
 */
import { endsWithPunctuation, wordCount } from "../../text/filters.js";
import type { FilterRejection } from "../self-instruct/filters.js";

export const topicFilterNames = [
  "topic-format",
  "topic-length",
  "topic-capital",
  "topic-punctuation",
  "topic-duplicate",
] as const;
export type TopicFilterName = (typeof topicFilterNames)[number];

/** Our wording of the brainstorming request; four requirements, then "List of 10 topics:" and the given topics. */
export function buildTopicPrompt(typeLabel: string, topics: readonly string[]): string {
  const listed = topics.map((topic, i) => `${i + 1}. ${topic}`).join("\n");
  return `Brainstorm 10 different topics for the question type "${typeLabel}".

Requirements:
1. Do not reuse a word that already appears in another topic.
2. Keep every topic to at most three words.
3. Write each topic as a noun phrase that starts with a capital letter.
4. Make every topic fit the question type.

List of 10 topics:

${listed}
`;
}

export type ParsedTopic =
  | { ok: true; line: number; topic: string }
  | ({ ok: false; line: number; text: string } & FilterRejection<TopicFilterName>);

/** Read the first 20 lines of a completion: text after the first ". ", short, capitalised, no end punctuation. */
export function parseTopics(completion: string): ParsedTopic[] {
  const out: ParsedTopic[] = [];
  const lines = completion.split("\n").slice(0, 20);
  lines.forEach((rawLine, line) => {
    if (rawLine.trim() === "") return;
    const at = rawLine.indexOf(". ");
    if (at < 0) {
      out.push({ ok: false, line, text: rawLine, filter: "topic-format", reason: 'no "N. " list marker on the line' });
      return;
    }
    const topic = rawLine.slice(at + 2).trim();
    const rejection = checkTopic(topic);
    out.push(rejection ? { ok: false, line, text: topic, ...rejection } : { ok: true, line, topic });
  });
  return out;
}

/** The topic filters (A.3): non-empty, <= 3 words, ASCII upper-case first letter, no trailing punctuation. */
export function checkTopic(topic: string): FilterRejection<TopicFilterName> | undefined {
  if (topic === "") return { filter: "topic-format", reason: "the topic is empty" };
  const words = wordCount(topic);
  if (words > 3) return { filter: "topic-length", reason: `topic has ${words} words; at most 3 allowed` };
  if (!/^[A-Z]/.test(topic))
    return { filter: "topic-capital", reason: `topic starts with "${topic[0]}", not an upper-case letter` };
  if (endsWithPunctuation(topic)) {
    return { filter: "topic-punctuation", reason: `topic ends with punctuation "${topic[topic.length - 1]}"` };
  }
  return undefined;
}

/** Per-type case-insensitive dedup (first kept), then every type cut to the smallest type's count. */
export function balanceTopics(topicsByType: ReadonlyMap<string, readonly string[]>): Map<string, string[]> {
  const deduped = new Map<string, string[]>();
  for (const [type, topics] of topicsByType) {
    const seen = new Set<string>();
    const kept: string[] = [];
    for (const topic of topics) {
      const key = topic.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      kept.push(topic);
    }
    deduped.set(type, kept);
  }
  const least = Math.min(...[...deduped.values()].map((topics) => topics.length));
  for (const [type, topics] of deduped) deduped.set(type, topics.slice(0, Number.isFinite(least) ? least : 0));
  return deduped;
}
