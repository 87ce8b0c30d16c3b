/**
 * Stage 1b, Topic-Guided Red-Teaming Self-Instruct (method-spec A.3): grow balanced topic lists per adversarial
 * question type over several brainstorming epochs (`red-team-topics`), then write one question per (type, topic)
 * (`red-team`). Topic prompts commit in order, so resume reproduces the same topic lists.
 */
import {
  type CompletionRequest,
  type LanguageModel,
  type SamplingOptions,
  requestConcurrency,
} from "../../backends/language-model.js";
import type { RedTeamType } from "../../constitution/constitution-schema.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type { StoreRecord } from "../../run-store/jsonl.js";
import type { ItemResult } from "../../run-store/process-items.js";
import { recordId } from "../../run-store/record-id.js";
import type { StageStore } from "../../run-store/stage-store.js";
import { completeInOrder, completeOne } from "../shared/complete-in-order.js";
import { checkContext, overflowRejection } from "../shared/context-check.js";
import { deriveSeed, sampleWithoutReplacement, seededRandom, shuffled } from "../shared/random.js";
import { type StageUsage, usageSince } from "../shared/stage-usage.js";
import { listGrammar } from "../shared/grammar.js";
import {
  buildQuestionPrompt,
  instructionLabel,
  parseQuestions,
  questionLinePrefixes,
  type SeedQuestion,
} from "./questions.js";
import { balanceTopics, buildTopicPrompt, parseTopics } from "./topics.js";

export const redTeamStage = "red-team";
export const redTeamTopicsStage = "red-team-topics";

/** Topic brainstorming sampling: T 1.0, top-p 0.98, 128 new tokens, end-of-sequence banned. */
export const topicSamplingDefaults = { temperature: 1, topP: 0.98, maxTokens: 128, allowEos: false } as const;
/** Question sampling: T 1.0, top-p 0.95, 384 new tokens. */
export const questionSamplingDefaults = { temperature: 1, topP: 0.95, maxTokens: 384 } as const;

export interface TopicRecord {
  [field: string]: unknown;
  id: string;
  parentId: string;
  epoch: number;
  /** Position among the topics its prompt produced. */
  line: number;
  questionType: string;
  topic: string;
}

export interface RedTeamRecord {
  [field: string]: unknown;
  id: string;
  parentId: string;
  instruction: string;
  input: "";
  output: "";
  source: "red-team";
  /** The red-team type id. */
  questionType: string;
  topic: string;
  backend: string;
}

export interface RunRedTeamOptions {
  backend: LanguageModel;
  /** Store of the `red-team-topics` stage. Topics are not sharded: each shard grows the same lists. */
  topicStore: StageStore;
  /** Store of the `red-team` stage (questions; sharded by prompt id). */
  store: StageStore;
  constitution: { redTeamTypes: readonly RedTeamType[]; hash?: string };
  /** Brainstorming epochs. Default 5 (the question stage of the reference read the epoch-5 topics). */
  epochs?: number;
  /** Cap on topics per type after balancing (bounds growth). Default unlimited. */
  maxTopicsPerType?: number;
  /** Target (type, topic) pairs per question prompt. Default 5. */
  targetsPerPrompt?: number;
  /** Seed questions shown per prompt. Default 5. */
  seedsPerPrompt?: number;
  topicSampling?: SamplingOptions;
  questionSampling?: SamplingOptions;
  /**
   * A GBNF grammar for the text of one question (its `root` rule); each question prompt then constrains the whole
   * answer list to its own numbered hint lines, each followed by a question of this grammar.
   */
  questionGrammar?: string;
  seed?: number;
  /** Prompts in flight at once. Default the backend's `parallel` capability. */
  batchSize?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunRedTeamResult {
  counts: { topics: Record<string, number>; kept: number; rejected: number };
  /** Tokens this call used in both phases, topics and questions (the manifests also count earlier calls). */
  usage: StageUsage;
  warnings: string[];
}

interface TopicItem {
  id: string;
  epoch: number;
  type: RedTeamType;
  topic: string;
}

/** Grow the topic lists; returns the balanced topics per type id after the last epoch. */
export async function runRedTeamTopics(options: RunRedTeamOptions): Promise<Map<string, string[]>> {
  const { backend, topicStore: store, onProgress, signal } = options;
  const types = options.constitution.redTeamTypes;
  const epochs = options.epochs ?? 5;
  const seed = options.seed ?? 42;
  const sampling = { ...topicSamplingDefaults, ...options.topicSampling };
  const batchSize = requestConcurrency(backend, options.batchSize);
  const stage = store.stage;
  const records = await store.readRecords<TopicRecord>();
  const cap = (topics: Map<string, string[]>) => {
    const balanced = balanceTopics(topics);
    if (options.maxTopicsPerType !== undefined) {
      for (const [type, list] of balanced) balanced.set(type, list.slice(0, options.maxTopicsPerType));
    }
    return balanced;
  };

  let current = cap(new Map(types.map((type) => [type.id, [type.seedTopic]])));
  onProgress?.({ type: "stage-start", stage, total: epochs });
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const items: TopicItem[] = [];
    for (const type of types) {
      for (const topic of current.get(type.id) ?? []) {
        items.push({ id: recordId(stage, seed, epoch, type.id, topic.toLowerCase()), epoch, type, topic });
      }
    }
    // Topics of this epoch so far: the balanced list, then new topics in commit order (replayed from the store).
    const next = new Map([...current].map(([type, topics]) => [type, [...topics]]));
    const known = new Map([...next].map(([type, topics]) => [type, new Set(topics.map((t) => t.toLowerCase()))]));
    for (const record of records) {
      if (record.epoch !== epoch) continue;
      next.get(record.questionType)?.push(record.topic);
      known.get(record.questionType)?.add(record.topic.toLowerCase());
    }
    const pending = items.filter((item) => !store.isDone(item.id));
    for (let start = 0; start < pending.length; start += batchSize) {
      const batch = pending.slice(start, start + batchSize);
      const requests: CompletionRequest[] = [];
      const sent: TopicItem[] = [];
      let deferred = 0;
      for (const [position, item] of batch.entries()) {
        const prompt = buildTopicPrompt(item.type.label, topicsToShow(item, current, seed));
        const overflow = await checkContext(backend, prompt, sampling.maxTokens);
        if (overflow && sent.length === 0) {
          await store.appendRejected({
            epoch,
            questionType: item.type.id,
            topic: item.topic,
            prompt,
            ...overflowRejection(item.id, overflow),
          });
          continue;
        }
        if (overflow) {
          // Recorded in order once the items before it are committed: it opens the next batch.
          deferred = batch.length - position;
          break;
        }
        sent.push(item);
        requests.push({ ...sampling, prompt, seed: deriveSeed(item.id) });
      }
      start -= deferred;
      if (sent.length === 0) continue;
      await completeInOrder(
        backend,
        requests,
        async (i, result) => {
          const item = sent[i]!;
          store.addUsage(result.usage);
          const parsed = parseTopics(result.completions[0]?.text ?? "");
          for (const topic of parsed) {
            const id = recordId(item.id, topic.line);
            if (store.isDone(id)) continue;
            const base = { id, parentId: item.id, epoch, line: topic.line, questionType: item.type.id };
            if (!topic.ok) {
              await store.appendRejected({ ...base, topic: topic.text, filter: topic.filter, reason: topic.reason });
              continue;
            }
            const key = topic.topic.toLowerCase();
            const seen = known.get(item.type.id)!;
            if (seen.has(key)) {
              await store.appendRejected({
                ...base,
                topic: topic.topic,
                filter: "topic-duplicate",
                reason: `"${topic.topic}" is already a topic of ${item.type.id}`,
              });
              continue;
            }
            seen.add(key);
            next.get(item.type.id)!.push(topic.topic);
            const record: TopicRecord = { ...base, topic: topic.topic };
            await store.appendRecord(record);
          }
          await store.markDone(item.id);
        },
        signal,
      );
      await store.saveManifest();
    }
    current = cap(next);
    onProgress?.({
      type: "record-end",
      stage,
      done: epoch,
      total: epochs,
      records: { kept: store.manifest.counts.kept, rejected: store.manifest.counts.rejected },
    });
  }
  store.manifest.extra.topicsPerType = Object.fromEntries([...current].map(([type, list]) => [type, list.length]));
  await store.saveManifest();
  onProgress?.({
    type: "stage-end",
    stage,
    done: epochs,
    kept: store.manifest.counts.kept,
    rejected: store.manifest.counts.rejected,
  });
  return current;
}

/** The topics listed in a brainstorming prompt: the item's own topic alone while the type has < 10, else 5 random. */
function topicsToShow(item: TopicItem, current: Map<string, string[]>, seed: number): string[] {
  const all = current.get(item.type.id) ?? [];
  if (all.length < 10) return [item.topic];
  return sampleWithoutReplacement(seededRandom("topics-shown", seed, item.id), all, 5);
}

interface QuestionItem {
  id: string;
  targets: { type: RedTeamType; topic: string }[];
}

/** Run both phases: topics, then one question per (type, topic). */
export async function runRedTeam(options: RunRedTeamOptions): Promise<RunRedTeamResult> {
  const { backend, topicStore, store, onProgress, signal } = options;
  const callUsage = usageSince(topicStore, store);
  const topics = await runRedTeamTopics(options);
  const stage = store.stage;
  const types = options.constitution.redTeamTypes;
  const byId = new Map(types.map((type) => [type.id, type]));
  const seed = options.seed ?? 42;
  const perPrompt = options.targetsPerPrompt ?? 5;
  const seedsPerPrompt = options.seedsPerPrompt ?? 5;
  const sampling = { ...questionSamplingDefaults, ...options.questionSampling };
  const batchSize = requestConcurrency(backend, options.batchSize);

  const pairs = shuffled(
    seededRandom("question-order", seed),
    types.flatMap((type) => (topics.get(type.id) ?? []).map((topic) => ({ type, topic }))),
  );
  const items: QuestionItem[] = [];
  for (let start = 0; start < pairs.length; start += perPrompt) {
    const targets = pairs.slice(start, start + perPrompt);
    items.push({
      id: recordId(
        stage,
        seed,
        targets.map((t) => [t.type.id, t.topic]),
      ),
      targets,
    });
  }
  const seedQuestions: SeedQuestion[] = types.map((type) => ({
    label: type.label,
    topic: type.seedTopic,
    question: type.seedQuestion,
  }));

  await store.processItems<QuestionItem, StoreRecord>({
    items,
    concurrency: batchSize,
    ...(signal ? { signal } : {}),
    ...(onProgress ? { onProgress } : {}),
    process: async (item, itemSignal) => {
      const seeds = sampleWithoutReplacement(seededRandom("seed-questions", item.id), seedQuestions, seedsPerPrompt);
      const targets = item.targets.map((t) => ({ label: t.type.label, topic: t.topic }));
      const prompt = buildQuestionPrompt(seeds, targets);
      const pairId = (t: { type: RedTeamType; topic: string }) => recordId(stage, t.type.id, t.topic);
      const overflow = await checkContext(backend, prompt, sampling.maxTokens);
      if (overflow) {
        return item.targets.map((t) => ({
          rejected: {
            parentId: item.id,
            questionType: t.type.id,
            topic: t.topic,
            ...overflowRejection(item.id, overflow, pairId(t)),
          },
        }));
      }
      const grammar = options.questionGrammar
        ? { grammar: listGrammar(options.questionGrammar, questionLinePrefixes(seeds.length, targets)) }
        : {};
      const { completion, usage } = await completeOne(
        backend,
        { ...sampling, ...grammar, prompt, seed: deriveSeed(item.id) },
        { signal: itemSignal, recordId: item.id },
      );
      store.addUsage(usage, item.id);
      const parsed = parseQuestions(completion.text, seeds.length, targets);
      return parsed.map((question, i): ItemResult => {
        const t = item.targets[i]!;
        const base = { id: pairId(t), parentId: item.id, questionType: t.type.id, topic: t.topic };
        // The model's whole answer is what was judged: kept with the rejection, so the report can show it.
        if (!question.found)
          return { rejected: { ...base, text: completion.text, filter: "question-missing", reason: question.reason } };
        const record: RedTeamRecord = {
          ...base,
          instruction: question.question,
          input: "",
          output: "",
          source: "red-team",
          typeLabel: instructionLabel(byId.get(t.type.id)!.label),
          backend: backend.id,
        };
        return { kept: record };
      });
    },
  });
  return {
    counts: {
      topics: Object.fromEntries([...topics].map(([type, list]) => [type, list.length])),
      kept: store.manifest.counts.kept,
      rejected: store.manifest.counts.rejected,
    },
    usage: callUsage(),
    warnings: [...topicStore.warnings, ...store.warnings],
  };
}
