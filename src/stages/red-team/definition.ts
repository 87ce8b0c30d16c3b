/** Stage 1b as data: red-team's options, its two folders' record schemas, merge rule and report views. */
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import type { StoreRecord } from "../../run-store/index.js";
import { keptRecordSchema, rejectedRecordSchema, samplingWithDefaults } from "../shared/record-schemas.js";
import { loadGrammar, withGrammar } from "../shared/grammar.js";
import { fixedPromptParts, longestQuestionPrompt, longestTopicPrompt } from "../shared/longest-prompts.js";
import { mergeOnePer } from "../shared/merge-one-per.js";

/** What the estimate assumes one brainstorming prompt adds to its type's list (after the filters and balancing). */
const newTopicsPerPrompt = 3;
import {
  questionSamplingDefaults,
  redTeamStage,
  redTeamTopicsStage,
  runRedTeam,
  topicSamplingDefaults,
} from "./run.js";

export const topicRecordSchema = keptRecordSchema({
  parentId: z.string(),
  epoch: z.number().int().min(1),
  line: z.number().int(),
  questionType: z.string(),
  topic: z.string(),
});

export const topicRejectedSchema = rejectedRecordSchema({
  epoch: z.number().int().optional(),
  line: z.number().int().optional(),
  questionType: z.string().optional(),
  topic: z.string().optional(),
});

export const redTeamRecordSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.literal(""),
  output: z.literal(""),
  source: z.literal("red-team"),
  questionType: z.string(),
  topic: z.string(),
  backend: z.string(),
});

export const redTeamRejectedSchema = rejectedRecordSchema({
  questionType: z.string().optional(),
  topic: z.string().optional(),
  /** The model's answer that was judged. */
  text: z.string().optional(),
});

const { allowEos: _allowEos, ...topicDefaults } = topicSamplingDefaults;

export const redTeamOptionsSchema = z.strictObject({
  epochs: positiveInt.default(5).describe("topic brainstorming epochs"),
  maxTopicsPerType: positiveInt.optional().describe("cap on topics per type after balancing"),
  targetsPerPrompt: positiveInt.default(5).describe("(type, topic) pairs asked for per question prompt"),
  seedsPerPrompt: positiveInt.default(5).describe("seed questions shown per question prompt"),
  batchSize: positiveInt.optional().describe("prompts in flight (default: the backend's parallelism)"),
  topicSampling: samplingWithDefaults(topicDefaults),
  /** Its `grammar` constrains the text of one question; the stage wraps it in each prompt's numbered lines. */
  questionSampling: samplingWithDefaults(questionSamplingDefaults),
});

const coverageView = (record: StoreRecord) => ({
  instruction: typeof record.instruction === "string" ? record.instruction : String(record.topic ?? ""),
  input: "",
  thoughts: "",
  output: typeof record.text === "string" ? record.text : "",
  principles: [],
  ...(typeof record.questionType === "string" ? { questionType: record.questionType } : {}),
  ...(typeof record.topic === "string" ? { topic: record.topic } : {}),
});

export const redTeamDefinition = defineStage({
  name: redTeamStage,
  summary: "Stage 1b: brainstorm topics per red-team question type, then one question per (type, topic) (A.3).",
  folders: [
    { name: redTeamStage, kept: redTeamRecordSchema, rejected: redTeamRejectedSchema },
    { name: redTeamTopicsStage, kept: topicRecordSchema, rejected: topicRejectedSchema },
  ],
  upstream: [],
  options: redTeamOptionsSchema,
  amountOptions: ["epochs", "batchSize"],
  models: ["generator"],
  flagAliases: { "max-tokens": "questionSampling.maxTokens", temperature: "questionSampling.temperature" },
  async run(context) {
    const { batchSize, maxTopicsPerType, topicSampling, questionSampling, ...options } = context.options;
    const { grammar: questionGrammar, ...questions } = questionSampling;
    const loadedQuestionGrammar = await loadGrammar(context, questionGrammar, "questionSampling.grammar");
    const out = await runRedTeam({
      ...options,
      topicSampling: await withGrammar(context, topicSampling, "topicSampling.grammar"),
      questionSampling: questions,
      ...(loadedQuestionGrammar ? { questionGrammar: loadedQuestionGrammar } : {}),
      ...(batchSize === undefined ? {} : { batchSize }),
      ...(maxTopicsPerType === undefined ? {} : { maxTopicsPerType }),
      backend: await context.model("generator"),
      topicStore: await context.store(redTeamTopicsStage),
      store: await context.store(redTeamStage),
      constitution: context.constitution,
      seed: context.seed,
      ...progressOptions(context),
    });
    const topics = Object.values(out.counts.topics).reduce((sum, n) => sum + n, 0);
    return {
      usage: out.usage,
      warnings: out.warnings,
      summary: `${topics} topics, kept ${out.counts.kept} questions, rejected ${out.counts.rejected}`,
    };
  },
  async estimate({ options, constitution, countTokens }) {
    const types = constitution.redTeamTypes.length;
    const topicPrompt = await countTokens(longestTopicPrompt(constitution));
    const questionPrompt = await countTokens(
      longestQuestionPrompt(constitution, options.seedsPerPrompt, options.targetsPerPrompt),
    );
    const fixed = fixedPromptParts(constitution);
    const topicFixed = await countTokens(fixed.topic);
    const questionFixed = await countTokens(fixed.question);
    const topicTokens = options.topicSampling.maxTokens ?? topicSamplingDefaults.maxTokens;
    const questionTokens = options.questionSampling.maxTokens ?? questionSamplingDefaults.maxTokens;
    // Each epoch prompts once per topic of every type; each prompt is assumed to add `newTopicsPerPrompt` topics.
    let perType = 1;
    let topicPrompts = 0;
    for (let epoch = 1; epoch <= options.epochs; epoch++) {
      topicPrompts += types * perType;
      perType = Math.min(options.maxTopicsPerType ?? Number.POSITIVE_INFINITY, perType * (1 + newTopicsPerPrompt));
    }
    const pairs = types * perType;
    const questionPrompts = Math.ceil(pairs / options.targetsPerPrompt);
    return {
      requests: topicPrompts + questionPrompts,
      promptTokens: topicPrompts * topicPrompt + questionPrompts * questionPrompt,
      evaluatedPromptTokens: topicPrompts * topicPrompt + questionPrompts * questionPrompt,
      completionTokens: topicPrompts * topicTokens + questionPrompts * questionTokens,
      trainTokens: 0,
      records: pairs,
      prompts: [
        {
          label: "topic prompt",
          tokens: topicPrompt,
          minTokens: topicFixed,
          maxTokens: topicTokens,
          maxTokensField: "topicSampling.maxTokens",
          role: "generator",
        },
        {
          label: "question prompt",
          tokens: questionPrompt,
          minTokens: questionFixed,
          maxTokens: questionTokens,
          maxTokensField: "questionSampling.maxTokens",
          role: "generator",
        },
      ],
      notes: [
        `${newTopicsPerPrompt} new topics per brainstorming prompt; ${perType} topics per type after ${options.epochs} epoch(s); every question kept`,
      ],
    };
  },
  merge: {
    // One question per (type, topic) across shards.
    [redTeamStage]: mergeOnePer(
      (record) => `${String(record.questionType)}\u0000${String(record.topic).toLowerCase()}`,
      "another shard already has a question for this type and topic",
    ),
    // Every shard grows the same topic lists: the same records, deduplicated by id.
  },
  report: {
    [redTeamStage]: { panels: ["prompts", "red-team-coverage"], view: coverageView },
    [redTeamTopicsStage]: { panels: ["red-team-coverage"], view: coverageView },
  },
});
