/**
 * I-SHEEP step 6 (method-spec C.6): a new LoRA adapter per round, trained on the kept pairs in the answering prompt
 * format. The paper's variants, named: `one-base` (default) trains the base on this round's pairs, `total-base` the
 * base on every round's pairs so far, `one-last` continues the previous round's adapter on this round's pairs. The LoRA settings
 * default to the paper's (rank 8, alpha 16, dropout 0.05, lr 5e-5, 20 warm-up steps, 2 epochs, all linear layers);
 * the training set is not capped unless `maxExamples` says so (the paper's `max_samples 3000`, pitfall C.9.6).
 */
import { join } from "node:path";
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { positiveInt, trainConfigSchema } from "../../pipeline/train-config.js";
import { recordId } from "../../run-store/index.js";
import { writeJsonLines } from "../../run-store/json-file.js";
import { loraTargets } from "../../training/embedded/lora.js";
import { trainAdapter } from "../engrave/run.js";
import { trainingTokens } from "../shared/estimate-training.js";
import { longestQuery } from "../shared/longest-prompts.js";
import { rejectedRecordSchema } from "../shared/record-schemas.js";
import { answerSamplingDefaults } from "./answers-stage.js";
import { answerCompletion, answerPrompt } from "./prompt.js";
import { type KeptPair, type TrainRecord, trainRecordSchema } from "./records.js";
import { isheepStages } from "./stage-names.js";
import { answerView } from "../shared/report-views.js";

export const trainVariants = ["one-base", "one-last", "total-base"] as const;
export type TrainVariant = (typeof trainVariants)[number];

/** The trainer options with the paper's LoRA settings as defaults (each can be overridden alone). */
const isheepTrainSchema = trainConfigSchema.extend({
  rank: positiveInt.default(8).describe("LoRA rank (the paper: 8)"),
  alpha: z.number().positive().default(16).describe("LoRA alpha (the paper: 16)"),
  dropout: z.number().min(0).max(1).default(0.05).describe("LoRA dropout (the paper: 0.05)"),
  targets: z
    .array(z.enum(loraTargets))
    .default([...loraTargets])
    .describe("adapted projections (the paper: all linear layers)"),
  learningRate: z.number().positive().default(5e-5).describe("peak learning rate (the paper: 5e-5)"),
  epochs: z.number().positive().default(2).describe("epochs (the paper: 2)"),
  warmupSteps: z.number().int().min(0).default(20).describe("linear warm-up steps (the paper: 20)"),
});

/** A kept pair as a training example of round `fromRound`. */
export function toTrainRecord(stage: string, pair: KeptPair, fromRound: number): TrainRecord {
  return {
    id: recordId(stage, pair.id),
    parentId: pair.id,
    fromRound,
    instruction: pair.instruction,
    input: pair.input,
    output: pair.output,
    prompt: answerPrompt(pair.instruction, pair.input),
    completion: answerCompletion(pair.output, pair.ended),
  };
}

export const trainDefinition = defineStage({
  name: isheepStages.train,
  summary: "I-SHEEP 6: train the round's LoRA adapter on the kept pairs (one-base, one-last or total-base; C.6).",
  folders: [{ name: isheepStages.train, kept: trainRecordSchema, rejected: rejectedRecordSchema() }],
  upstream: [isheepStages.keep],
  options: z.strictObject({
    variant: z
      .enum(trainVariants)
      .default("one-base")
      .describe("what to train on and from (one-last keeps the last adapter's rank, alpha and targets)"),
    maxExamples: positiveInt.optional().describe("train on at most this many pairs (default all)"),
    train: isheepTrainSchema.prefault({}),
  }),
  amountOptions: [],
  models: ["trainer"],
  async run(context) {
    const { variant, maxExamples, train } = context.options;
    const round = context.round?.index ?? 1;
    const sources = variant === "total-base" ? Array.from({ length: round }, (_, i) => i + 1) : [round];
    const store = await context.store();
    const records: TrainRecord[] = [];
    for (const from of sources) {
      const kept =
        from === round
          ? await context.upstreamRecords<KeptPair>(isheepStages.keep)
          : await context.roundRecords<KeptPair>(isheepStages.keep, from);
      for (const pair of kept) records.push(toTrainRecord(store.stage, pair, from));
    }
    const examples = maxExamples === undefined ? records : records.slice(0, maxExamples);
    if (examples.length === 0) {
      throw new ConfigError(
        `${store.stage}: no pairs were kept in round ${round}, so there is nothing to train on. Lower ${isheepStages.keep}'s threshold, rate fewer aspects, or generate more prompts`,
        { path: store.dir },
      );
    }
    // one-last continues the previous round's adapter (its rank, alpha and targets); round 1 starts fresh.
    const initAdapter =
      variant === "one-last" && round > 1 ? await context.adapterOf(isheepStages.train, round - 1) : undefined;
    if (variant === "one-last" && round > 1 && initAdapter === undefined) {
      throw new ConfigError(
        `${store.stage}: the one-last variant continues round ${round - 1}'s adapter, which has not been trained; run round ${round - 1} first`,
        { path: context.runDir },
      );
    }
    const { trainer, options: configured, base } = await context.trainer(train);
    // The adapter continued keeps its own rank, alpha and targets (the trainer refuses others).
    const { rank: _rank, alpha: _alpha, targets: _targets, ...shapeless } = configured;
    const options = initAdapter === undefined ? configured : shapeless;
    for (const record of examples) if (!store.isDone(record.id)) await store.appendRecord(record);
    // The set in Alpaca form, read unchanged by other SFT tools.
    await writeJsonLines(
      join(store.dir, "alpaca.jsonl"),
      examples.map(({ instruction, input, output }) => ({ instruction, input, output })),
    );
    const result = await trainAdapter(store, examples, join(store.dir, "adapter"), {
      trainer,
      base,
      trainOptions: { seed: context.seed, ...options },
      ...(initAdapter === undefined ? {} : { initAdapter }),
      ...progressOptions(context),
    });
    store.manifest.extra.examples = examples.length;
    store.manifest.extra.variant = variant;
    if (initAdapter !== undefined) store.manifest.extra.initAdapter = initAdapter;
    await store.saveManifest();
    return {
      usage: { promptTokens: 0, completionTokens: 0 },
      adapter: result.adapterPath,
      summary: `${variant}: ${examples.length} examples, ${result.steps} steps, final loss ${result.finalLoss.toFixed(4)}`,
    };
  },
  async estimate({ options, constitution, countTokens, upstreamRecords, upstreamRecordTokens, round }) {
    const { variant, maxExamples, train } = options;
    const index = round?.index ?? 1;
    // total-base trains on every round so far, each assumed to keep as many pairs as this one.
    const rounds = variant === "total-base" ? index : 1;
    const examples = Math.min(maxExamples ?? Number.POSITIVE_INFINITY, rounds * upstreamRecords(isheepStages.keep));
    const query = longestQuery(constitution);
    const answer = upstreamRecordTokens(isheepStages.keep) ?? answerSamplingDefaults.maxTokens;
    const exampleTokens =
      (await countTokens(answerPrompt(query.instruction, query.input) + answerCompletion("", true))) + answer;
    return {
      requests: 0,
      promptTokens: 0,
      evaluatedPromptTokens: 0,
      completionTokens: 0,
      trainTokens: trainingTokens(train, { examples, exampleTokens }),
      records: examples,
      prompts: [],
      notes: [
        `${variant}: ${examples} examples of at most ${exampleTokens} tokens${rounds > 1 ? ` (rounds 1-${index}, each keeping as many)` : ""}`,
      ],
    };
  },
  report: {
    [isheepStages.train]: {
      view: answerView,
      figures: (manifest): Record<string, number> =>
        typeof manifest.extra.finalLoss === "number" && Number.isFinite(manifest.extra.finalLoss)
          ? { "final loss": manifest.extra.finalLoss }
          : {},
    },
  },
});
