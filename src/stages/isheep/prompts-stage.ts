/**
 * I-SHEEP step 1 (method-spec C.1): the round's model writes new tasks from 5 sampled seed tasks — stage 1a's
 * self-instruct mechanism (prompt, parser, filters, ROUGE-L dedup > 0.7, all shared) plus I-SHEEP's three extra
 * checks. The dedup is global across the round (the reference deduplicated within one ~100-task call only) and, as
 * an option, across rounds.
 */
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import { generationCallsEstimate } from "../shared/estimate-prompts.js";
import { withGrammar } from "../shared/grammar.js";
import { fixedPromptParts, longestSelfInstructPrompt } from "../shared/longest-prompts.js";
import { samplingWithDefaults } from "../shared/record-schemas.js";
import {
  keptPerRound,
  selfInstructRecordSchema,
  selfInstructRejectedSchema,
  selfInstructDefinition,
} from "../self-instruct/definition.js";
import { runSelfInstruct } from "../self-instruct/run.js";
import { filterGeneratedTask } from "./filters.js";
import { isheepStages } from "./stage-names.js";

/**
 * C.1's sampling (T 1.0, top-p 0.95, 1000 new tokens, end-of-sequence allowed), with the stop moved from "17" —
 * which also fired on any 17 in the text (pitfall C.9.1) — to the start of item 17.
 */
export const promptSamplingDefaults = { temperature: 1, topP: 0.95, maxTokens: 1000, stop: ["###\n17."] };

export const promptsOptionsSchema = z.strictObject({
  target: positiveInt
    .default(100)
    .describe("prompts to keep per round: generation stops once this many are kept (the paper: 10,000)"),
  demos: positiveInt.default(5).describe("seed tasks shown per generation call"),
  maxCalls: positiveInt.optional().describe("hard cap on generation calls per round"),
  maxCallsWithoutProgress: positiveInt.default(20).describe("stop after this many calls in a row keep nothing"),
  dedupThreshold: z.number().min(0).max(1).default(0.7).describe("drop above this ROUGE-L with any kept prompt"),
  dedupAcrossRounds: z.boolean().default(false).describe("also drop prompts too close to earlier rounds' prompts"),
  batchSize: positiveInt.optional().describe("calls in flight (default: the backend's parallelism)"),
  sampling: samplingWithDefaults(promptSamplingDefaults),
});

export const promptsDefinition = defineStage({
  name: isheepStages.prompts,
  summary: "I-SHEEP 1: the round's model writes new tasks from seed tasks (self-instruct, ROUGE-L dedup; C.1).",
  folders: [{ name: isheepStages.prompts, kept: selfInstructRecordSchema, rejected: selfInstructRejectedSchema }],
  upstream: [],
  options: promptsOptionsSchema,
  amountOptions: ["target", "maxCalls", "maxCallsWithoutProgress", "batchSize"],
  models: ["generator"],
  async run(context) {
    const { maxCalls, maxCallsWithoutProgress, batchSize, dedupAcrossRounds, sampling, ...options } = context.options;
    const round = context.round?.index ?? 1;
    const earlier = [];
    if (dedupAcrossRounds) {
      for (let r = 1; r < round; r++) {
        for (const record of await context.roundRecords<{ id: string; instruction: string }>(isheepStages.prompts, r))
          earlier.push({ id: record.id, instruction: record.instruction });
      }
    }
    const out = await runSelfInstruct({
      ...options,
      ...(batchSize === undefined ? {} : { batchSize }),
      ...(maxCalls === undefined ? {} : { maxRounds: maxCalls }),
      maxRoundsWithoutProgress: maxCallsWithoutProgress,
      sampling: { ...(await withGrammar(context, sampling)), allowEos: true },
      taskFilter: filterGeneratedTask,
      dedupPool: earlier,
      backend: await context.model("generator"),
      store: await context.store(),
      constitution: context.constitution,
      seed: context.seed,
      ...progressOptions(context),
    });
    return {
      usage: out.usage,
      warnings: out.warnings,
      summary: `kept ${out.counts.kept}, rejected ${out.counts.rejected} after ${out.counts.rounds} calls (${out.stopReason})`,
    };
  },
  async estimate({ options, constitution, countTokens, round }) {
    const prompt = await countTokens(longestSelfInstructPrompt(constitution, options.demos));
    const fixed = await countTokens(fixedPromptParts(constitution).selfInstruct);
    const maxTokens = options.sampling.maxTokens ?? promptSamplingDefaults.maxTokens;
    const calls = Math.min(options.maxCalls ?? Number.POSITIVE_INFINITY, Math.ceil(options.target / keptPerRound));
    return generationCallsEstimate({
      calls,
      promptTokens: prompt,
      fixedTokens: fixed,
      maxTokens,
      keptPerCall: keptPerRound,
      target: options.target,
      notes: [
        `${keptPerRound} tasks kept per call (as stage 1a assumes)`,
        ...(round
          ? [
              `round ${round.index} of ${round.count}: every round is estimated as the first (the same targets; what a trained round keeps is not known before)`,
            ]
          : []),
      ],
    });
  },
  // Shards of a round join with stage 1a's rule: ROUGE-L dedup across shards.
  merge: { [isheepStages.prompts]: selfInstructDefinition.merge!["self-instruct"]! },
  report: { [isheepStages.prompts]: selfInstructDefinition.report!["self-instruct"]! },
});
