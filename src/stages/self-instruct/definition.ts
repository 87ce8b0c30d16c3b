/** Stage 1a as data: self-instruct's options, record schemas, merge rule and report view (see run.ts for the stage). */
import { z } from "zod";
import { defineStage, progressOptions, type MergeRule } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import type { StoreRecord } from "../../run-store/index.js";
import { DedupIndex } from "../../text/dedup-index.js";
import { generationCallsEstimate } from "../shared/estimate-prompts.js";
import { withGrammar } from "../shared/grammar.js";
import { fixedPromptParts, longestSelfInstructPrompt } from "../shared/longest-prompts.js";
import { keptRecordSchema, rejectedRecordSchema, samplingWithDefaults } from "../shared/record-schemas.js";
import { runSelfInstruct, selfInstructSamplingDefaults, selfInstructStage } from "./run.js";

export const selfInstructRecordSchema = keptRecordSchema({
  parentId: z.string(),
  round: z.number().int().min(0),
  instruction: z.string(),
  input: z.string(),
  output: z.literal(""),
  source: z.literal("self-instruct"),
  avgSimilarity: z.number(),
  maxSimilarity: z.number(),
  backend: z.string(),
});

export const selfInstructRejectedSchema = rejectedRecordSchema({
  round: z.number().int().min(0).optional(),
  instruction: z.string().optional(),
  input: z.string().optional(),
  text: z.string().optional(),
  prompt: z.string().optional(),
});

const { allowEos: _allowEos, ...samplingDefaults } = selfInstructSamplingDefaults;

/** What the estimate assumes a round keeps (the yield of a real base model is not known before the run). */
export const keptPerRound = 5;

export const selfInstructOptionsSchema = z.strictObject({
  target: positiveInt.default(100).describe("instructions to keep (in this shard)"),
  demos: positiveInt.default(5).describe("demo tasks per prompt"),
  generatedDemos: z.number().int().min(0).default(0).describe("demos drawn from generated tasks once there are enough"),
  maxRounds: positiveInt.optional().describe("hard cap on rounds (prompts)"),
  maxRoundsWithoutProgress: positiveInt.default(20).describe("stop after this many rounds in a row keep nothing"),
  dedupThreshold: z.number().min(0).max(1).default(0.7).describe("drop above this ROUGE-L with any kept instruction"),
  batchSize: positiveInt.optional().describe("prompts in flight (default: the backend's parallelism)"),
  sampling: samplingWithDefaults(samplingDefaults),
});

export const selfInstructDefinition = defineStage({
  name: selfInstructStage,
  summary: "Stage 1a: invent task instructions from seed tasks (ROUGE-L deduplicated; method-spec A.2).",
  folders: [{ name: selfInstructStage, kept: selfInstructRecordSchema, rejected: selfInstructRejectedSchema }],
  upstream: [],
  options: selfInstructOptionsSchema,
  amountOptions: ["target", "maxRounds", "maxRoundsWithoutProgress", "batchSize"],
  models: ["generator"],
  flagAliases: { "max-tokens": "sampling.maxTokens", temperature: "sampling.temperature" },
  async run(context) {
    const { batchSize, maxRounds, sampling, ...options } = context.options;
    const out = await runSelfInstruct({
      ...options,
      sampling: await withGrammar(context, sampling),
      ...(batchSize === undefined ? {} : { batchSize }),
      ...(maxRounds === undefined ? {} : { maxRounds }),
      backend: await context.model("generator"),
      store: await context.store(),
      constitution: context.constitution,
      seed: context.seed,
      ...progressOptions(context),
    });
    return {
      usage: out.usage,
      warnings: out.warnings,
      summary: `kept ${out.counts.kept}, rejected ${out.counts.rejected} after ${out.counts.rounds} rounds (${out.stopReason})`,
    };
  },
  async estimate({ options, constitution, countTokens }) {
    const prompt = await countTokens(longestSelfInstructPrompt(constitution, options.demos));
    const fixed = await countTokens(fixedPromptParts(constitution).selfInstruct);
    const maxTokens = options.sampling.maxTokens ?? selfInstructSamplingDefaults.maxTokens;
    const rounds = Math.min(options.maxRounds ?? Number.POSITIVE_INFINITY, Math.ceil(options.target / keptPerRound));
    return generationCallsEstimate({
      calls: rounds,
      promptTokens: prompt,
      fixedTokens: fixed,
      maxTokens,
      keptPerCall: keptPerRound,
      target: options.target,
      notes: [`${keptPerRound} instructions kept per round (of the 20 asked for, after the filters and dedup)`],
    });
  },
  merge: {
    // ROUGE-L dedup across all shards (the reference only removed exact duplicates across shards, A.11.8).
    [selfInstructStage]: ({ merged, constitution, settings }): MergeRule => {
      const instruction = (record: StoreRecord) => String(record.instruction ?? "");
      const threshold = typeof settings?.dedupThreshold === "number" ? settings.dedupThreshold : 0.7;
      const index = new DedupIndex({ threshold });
      for (const task of constitution.seedTasks) index.add(task.instruction, `seed:${task.id}`);
      for (const record of merged) index.add(instruction(record), record.id);
      return {
        check: (record) => {
          const check = index.check(instruction(record));
          if (check.keep) return undefined;
          return {
            filter: "merge-rouge-dedup",
            reason: `ROUGE-L ${check.maxScore.toFixed(3)} > ${index.threshold} with ${check.nearest} from another shard`,
          };
        },
        add: (record) => index.add(instruction(record), record.id),
      };
    },
  },
  report: {
    [selfInstructStage]: {
      panels: ["prompts"],
      view: (record) => ({
        instruction: String(record.instruction ?? ""),
        input: String(record.input ?? ""),
        thoughts: "",
        output: String(record.text ?? ""),
        principles: [],
      }),
    },
  },
});
