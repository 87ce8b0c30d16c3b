/**
 * SALMON's stages as data (method-spec B.1-B.4): salmon-responses -> salmon-preferences -> salmon-aggregate ->
 * salmon-reward-model, each skipped unless the config turns it on. Options, record schemas and report views.
 */
import { z } from "zod";
import { modelSpecSchema } from "../../backends/model-spec.js";
import { ConfigError } from "../../errors/index.js";
import { defineStage, progressOptions, type ReportRecordView } from "../../pipeline/stage-definition.js";
import { positiveInt, trainConfigSchema } from "../../pipeline/train-config.js";
import type { StoreRecord } from "../../run-store/index.js";
import { engraveStage } from "../engrave/run.js";
import { withGrammar } from "../shared/grammar.js";
import { rejectedRecordSchema, samplingWithDefaults } from "../shared/record-schemas.js";
import { promptSourceStages, promptsFileSchema, readStagePromptsOrFile } from "../shared/stage-prompts.js";
import { verboseCloneStage } from "../verbose-clone/run.js";
import { aggregateDefaults } from "./aggregate.js";
import { currentSet, runSalmonAggregate, type SalmonAggregateRecord, salmonAggregateStage } from "./aggregate-stage.js";
import { loadLanguageOf } from "./language-id.js";
import {
  pairResponses,
  runSalmonPreferences,
  type SalmonPreferenceRecord,
  salmonPreferencesStage,
} from "./preferences.js";
import {
  salmonAggregateRecordSchema,
  salmonAggregateRejectedSchema,
  salmonPreferenceRecordSchema,
  salmonPreferenceRejectedSchema,
  salmonResponseRecordSchema,
  salmonResponseRejectedSchema,
  salmonRewardPairSchema,
} from "./record-schemas.js";
import {
  runSalmonResponses,
  type SalmonResponseRecord,
  salmonResponsesStage,
  salmonSamplingDefaults,
} from "./responses.js";
import { runSalmonRewardModel, salmonRewardModelStage } from "./reward-model-stage.js";
import { rewardPrinciplesOf, salmonOf } from "./reviewer-prompt.js";
import { sftModel } from "./sft-model.js";
import {
  estimateSalmonAggregate,
  estimateSalmonPreferences,
  estimateSalmonResponses,
  estimateSalmonRewardModel,
} from "./estimate.js";
import { answerView } from "../shared/report-views.js";

const probability = z.number().min(0).max(1);

const principlesOption = z
  .array(z.string().min(1))
  .min(1)
  .optional()
  .describe('reward principle ids of salmon.yaml (JSON, e.g. ["concise","ethical"]; default: all)');

export const salmonResponsesOptionsSchema = z.strictObject({
  prompts: promptsFileSchema,
  maxPrompts: positiveInt.optional().describe("answer at most this many prompts (default: all)"),
  policy: modelSpecSchema
    .optional()
    .describe("the SFT policy (default: the training base + the verbose-clone adapter, else the engrave adapter)"),
  sampling: samplingWithDefaults(salmonSamplingDefaults),
  concurrency: positiveInt.optional().describe("prompts in flight (default: the backend's parallelism)"),
});

export const salmonResponsesDefinition = defineStage({
  name: salmonResponsesStage,
  summary: "SALMON 1: the SFT model answers every prompt twice (B.1).",
  folders: [{ name: salmonResponsesStage, kept: salmonResponseRecordSchema, rejected: salmonResponseRejectedSchema }],
  upstream: [...promptSourceStages, engraveStage, verboseCloneStage],
  options: salmonResponsesOptionsSchema,
  amountOptions: ["maxPrompts", "concurrency"],
  models: ["policy"],
  skipByDefault: true,
  // Without a prompt file of its own, it answers the stage-1 prompts.
  needsUpstreamRecords: (options) => options.prompts === undefined,
  async run(context) {
    const { prompts: promptsFile, maxPrompts, policy: policySpec, sampling, concurrency } = context.options;
    salmonOf(context.constitution);
    const prompts = (await readStagePromptsOrFile(context, promptsFile, promptSourceStages)).slice(0, maxPrompts);
    const out = await runSalmonResponses({
      policy: await sftModel(context, policySpec, "policy"),
      store: await context.store(),
      prompts,
      constitution: context.constitution,
      sampling: await withGrammar(context, sampling),
      seed: context.seed,
      ...(concurrency === undefined ? {} : { concurrency }),
      ...progressOptions(context),
    });
    return {
      usage: out.usage,
      warnings: out.warnings,
      summary: `${out.counts.prompts} prompts: kept ${out.counts.kept} answers, rejected ${out.counts.rejected}`,
    };
  },
  estimate: estimateSalmonResponses,
  report: {
    [salmonResponsesStage]: {
      panels: ["answers"],
      view: answerView,
    },
  },
});

export const salmonPreferencesOptionsSchema = z.strictObject({
  judge: modelSpecSchema
    .optional()
    .describe("the judge (default: the SFT model, as for salmon-responses), e.g. a vLLM server with it loaded"),
  principles: principlesOption,
  maxPairs: positiveInt.optional().describe("judge at most this many pairs (default: all)"),
  concurrency: positiveInt
    .optional()
    .describe("pairs judged at once, each sending its 2 x principles score calls together (default 2)"),
});

/** The record browser's view of a judged pair: both outputs, and each principle's s12, s21 and verdict. */
function preferenceView(record: StoreRecord): ReportRecordView {
  const judgments = Array.isArray(record.judgments) ? (record.judgments as SalmonPreferenceRecord["judgments"]) : [];
  const verdict = { 0: "orders disagree", 1: "output 1", 2: "output 2" } as const;
  return {
    instruction: String(record.instruction ?? ""),
    input: String(record.input ?? ""),
    thoughts: judgments
      .map((j) => `${j.principle}: s12 ${j.s12.toFixed(3)}, s21 ${j.s21.toFixed(3)} -> ${verdict[j.preference]}`)
      .join("\n"),
    output: `Output 1:\n${String(record.output1 ?? "")}\n\nOutput 2:\n${String(record.output2 ?? "")}`,
    principles: judgments.filter((j) => j.preference !== 0).map((j) => j.principle),
    labels: { thoughts: "judgments (s12, s21)", output: "outputs" },
  };
}

export const salmonPreferencesDefinition = defineStage({
  name: salmonPreferencesStage,
  summary: "SALMON 2: the SFT model judges each pair under each reward principle, in both orders (B.2).",
  folders: [
    { name: salmonPreferencesStage, kept: salmonPreferenceRecordSchema, rejected: salmonPreferenceRejectedSchema },
  ],
  upstream: [salmonResponsesStage, engraveStage, verboseCloneStage],
  options: salmonPreferencesOptionsSchema,
  amountOptions: ["maxPairs", "concurrency"],
  models: ["judge"],
  skipByDefault: true,
  needsUpstreamRecords: true,
  async run(context) {
    const { judge: judgeSpec, principles: ids, maxPairs, concurrency } = context.options;
    const principles = rewardPrinciplesOf(context.constitution, ids, `stages.${salmonPreferencesStage}.principles`);
    const responses = await context.upstreamRecords<SalmonResponseRecord>(salmonResponsesStage);
    const pairs = pairResponses(responses, context.seed).slice(0, maxPairs);
    const out = await runSalmonPreferences({
      judge: await sftModel(context, judgeSpec, "judge"),
      store: await context.store(),
      pairs,
      principles,
      constitution: context.constitution,
      ...(concurrency === undefined ? {} : { concurrency }),
      ...progressOptions(context),
    });
    return {
      usage: out.usage,
      summary: `${out.counts.pairs} pairs x ${principles.length} principles x 2 orders: kept ${out.counts.kept}, rejected ${out.counts.rejected}`,
    };
  },
  estimate: estimateSalmonPreferences,
  report: { [salmonPreferencesStage]: { panels: ["preferences"], view: (record) => preferenceView(record) } },
});

export const salmonAggregateOptionsSchema = z.strictObject({
  principles: principlesOption,
  passes: positiveInt.default(aggregateDefaults.passes).describe("passes over the pairs (default 4)"),
  maxPrinciples: positiveInt
    .default(aggregateDefaults.maxPrinciples)
    .describe("the largest principle subset of an example (default 8)"),
  geometricP: z
    .number()
    .gt(0)
    .max(1)
    .default(aggregateDefaults.geometricP)
    .describe("subset size ~ Geometric(p) (default 0.2)"),
  negationRate: probability.default(aggregateDefaults.negationRate).describe("share of principles negated (0.5)"),
  noiseRate: probability.default(aggregateDefaults.noiseRate).describe("label noise (0.1)"),
  ruleNoiseRate: probability
    .default(aggregateDefaults.ruleNoiseRate)
    .describe("label noise where a rule decided (0.25)"),
  swapRate: probability
    .default(aggregateDefaults.swapRate)
    .describe("share of examples with the outputs swapped (0.5)"),
  aiPhrase: z
    .string()
    .default(aggregateDefaults.aiPhrase)
    .describe('an output with this phrase loses to one without ("" = rule off)'),
  aiRuleRate: probability.default(aggregateDefaults.aiRuleRate).describe("how often that rule applies (0.5)"),
  languageRule: z
    .boolean()
    .default(true)
    .describe("an output in another language than the instruction loses (language identification: eld)"),
});

export const salmonAggregateDefinition = defineStage({
  name: salmonAggregateStage,
  summary: "SALMON 3: principle subsets, negations, rules and noise turn judgments into preference examples (B.3).",
  folders: [{ name: salmonAggregateStage, kept: salmonAggregateRecordSchema, rejected: salmonAggregateRejectedSchema }],
  upstream: [salmonPreferencesStage],
  options: salmonAggregateOptionsSchema,
  amountOptions: [],
  models: [],
  skipByDefault: true,
  needsUpstreamRecords: true,
  async run(context) {
    const { principles: ids, languageRule, ...settings } = context.options;
    const field = `stages.${salmonAggregateStage}.principles`;
    const pairs = await context.upstreamRecords<SalmonPreferenceRecord>(salmonPreferencesStage);
    const judged = new Set(pairs.flatMap((pair) => pair.judgments.map((judgment) => judgment.principle)));
    // By default, the principles the pairs were judged by (salmon-preferences may judge a subset).
    const principles = rewardPrinciplesOf(context.constitution, ids, field).filter(
      (principle) => ids !== undefined || judged.has(principle.id),
    );
    const unjudged = principles.filter((principle) => !judged.has(principle.id));
    if (unjudged.length > 0)
      throw new ConfigError(
        `salmon-preferences judged no pair by ${unjudged.map((p) => `"${p.id}"`).join(", ")}; judge by it there, or leave it out here (judged: ${[...judged].join(", ") || "none"})`,
        { field },
      );
    const out = await runSalmonAggregate({
      store: await context.store(),
      pairs,
      principles: principles.map((principle) => principle.id),
      settings,
      constitution: context.constitution,
      seed: context.seed,
      ...(languageRule ? { languageOf: await loadLanguageOf() } : {}),
      ...(context.command ? { command: context.command } : {}),
      ...progressOptions(context),
    });
    return {
      usage: { promptTokens: 0, completionTokens: 0 },
      warnings: out.warnings,
      summary: `${out.examples} examples from ${settings.passes} passes (${out.skipped} draws without a label)`,
    };
  },
  estimate: estimateSalmonAggregate,
  report: {
    [salmonAggregateStage]: {
      panels: ["preference-labels"],
      view: (record, kept) => {
        const principles = Array.isArray(record.principles) ? record.principles.map(String) : [];
        if (!kept)
          return { instruction: String(record.instruction ?? ""), input: "", thoughts: "", output: "", principles };
        const example = record as unknown as SalmonAggregateRecord;
        const lines = principles.map(
          (id, i) =>
            `${i === example.dominant ? "* " : "  "}${id}${example.negated[i] ? " (negated)" : ""}: ${example.scores[i]?.toFixed(3)}`,
        );
        const flags = [
          example.rule ? `decided by the ${example.rule} rule` : undefined,
          example.noiseFlip ? "label flipped as noise" : undefined,
          example.swapped ? "outputs swapped" : undefined,
        ].filter(Boolean);
        return {
          instruction: example.instruction,
          input: example.input,
          thoughts: [...lines, ...(flags.length ? ["", flags.join("; ")] : [])].join("\n"),
          output: `Chosen:\n${example.chosen}\n\nRejected:\n${example.rejected}`,
          principles,
          labels: { thoughts: "principles (* dominant) and scores", output: "chosen / rejected" },
        };
      },
    },
  },
});

export const salmonRewardModelOptionsSchema = z.strictObject({
  train: trainConfigSchema.prefault({}),
  evalFraction: z
    .number()
    .min(0)
    .max(0.5)
    .default(0.05)
    .describe("share of the pairs held out for accuracy (default 0.05)"),
  evalEvery: z.number().int().min(0).default(20).describe("evaluate the held-out pairs every N steps (default 20)"),
});

export const salmonRewardModelDefinition = defineStage({
  name: salmonRewardModelStage,
  summary: "SALMON 4: a reward model (LoRA + scalar head) that follows the principles in its prompt (B.4).",
  folders: [{ name: salmonRewardModelStage, kept: salmonRewardPairSchema, rejected: rejectedRecordSchema() }],
  upstream: [salmonAggregateStage],
  options: salmonRewardModelOptionsSchema,
  // The trainer restarts by itself when `train` changes.
  amountOptions: ["train"],
  models: ["trainer"],
  skipByDefault: true,
  needsUpstreamRecords: true,
  async run(context) {
    const { train, evalFraction, evalEvery } = context.options;
    const all = await context.upstreamRecords<SalmonAggregateRecord>(salmonAggregateStage);
    const examples = currentSet(all, (await context.manifestExtra(salmonAggregateStage))?.set);
    const { trainer, options, base } = await context.trainer(train);
    await context.releaseModels();
    const out = await runSalmonRewardModel({
      store: await context.store(),
      examples,
      constitution: context.constitution,
      trainer,
      base,
      // Pairs too long for the context are dropped, not cut: cutting would remove the cue the reward is read after.
      trainOptions: { seed: context.seed, evalFraction, evalEvery, overlong: "drop", ...options },
      ...progressOptions(context),
    });
    const accuracy = out.train.evalCurve.at(-1)?.accuracy;
    return {
      usage: { promptTokens: 0, completionTokens: 0 },
      summary: `${out.pairs} pairs, ${out.train.steps} steps, final loss ${out.train.finalLoss.toFixed(4)}${accuracy === undefined ? "" : `, held-out accuracy ${accuracy.toFixed(3)}`}; reward model in ${out.dir}`,
    };
  },
  estimate: estimateSalmonRewardModel,
  report: {
    [salmonRewardModelStage]: {
      view: (record) => ({
        instruction: String(record.prompt ?? ""),
        input: "",
        thoughts: "",
        output: `Chosen:\n${String(record.chosen ?? "")}\n\nRejected:\n${String(record.rejected ?? "")}`,
        principles: Array.isArray(record.principles) ? record.principles.map(String) : [],
      }),
    },
  },
});

export const salmonDefinitions = [
  salmonResponsesDefinition,
  salmonPreferencesDefinition,
  salmonAggregateDefinition,
  salmonRewardModelDefinition,
] as const;
