/** Stage 4 as data: verbose cloning's options (teacher, sampling, training), record schemas and report views. */
import { z } from "zod";
import { modelSpecSchema } from "../../backends/model-spec.js";
import { ConfigError } from "../../errors/index.js";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { positiveInt, trainConfigSchema } from "../../pipeline/train-config.js";
import { recordId } from "../../run-store/index.js";
import { sftRecordSchema, sftReport } from "../engrave/definition.js";
import { engraveStage } from "../engrave/run.js";
import { trainingTokens } from "../shared/estimate-training.js";
import { withGrammar } from "../shared/grammar.js";
import { fixedPromptParts, longestChatPrompt } from "../shared/longest-prompts.js";
import { keptRecordSchema, rejectedRecordSchema, samplingWithDefaults } from "../shared/record-schemas.js";
import { promptSourceStages, promptsFileSchema, readStagePromptsOrFile } from "../shared/stage-prompts.js";
import { runVerboseClone, verboseCloneStage, verboseSamplingDefaults } from "./run.js";
import { answerView } from "../shared/report-views.js";

export const verboseCloneSftStage = `${verboseCloneStage}-sft`;

export const verboseRecordSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.string(),
  output: z.string(),
  ended: z.boolean(),
  finishReason: z.string(),
  repeatCut: z.boolean(),
  backend: z.string(),
});

export const verboseRejectedSchema = rejectedRecordSchema({
  instruction: z.string().optional(),
  input: z.string().optional(),
  output: z.string().optional(),
});

export const verboseCloneOptionsSchema = z.strictObject({
  prompts: promptsFileSchema,
  maxPrompts: positiveInt.optional().describe("answer at most this many prompts (default: all)"),
  teacher: modelSpecSchema
    .optional()
    .describe("the teacher (default: the training base + the engraving adapter), e.g. a vLLM server with it loaded"),
  sampling: samplingWithDefaults(verboseSamplingDefaults),
  train: trainConfigSchema.prefault({}),
});

export const verboseCloneDefinition = defineStage({
  name: verboseCloneStage,
  summary: "Stage 4: the engraved model answers verbosely; a fresh LoRA on the base learns it (A.6).",
  folders: [
    { name: verboseCloneStage, kept: verboseRecordSchema, rejected: verboseRejectedSchema },
    { name: verboseCloneSftStage, kept: sftRecordSchema, rejected: rejectedRecordSchema() },
  ],
  upstream: [...promptSourceStages, engraveStage],
  options: verboseCloneOptionsSchema,
  // Answers are kept per prompt (maxPrompts); the training restarts by itself when `train` changes.
  amountOptions: ["maxPrompts", "train"],
  models: ["teacher", "trainer"],
  async run(context) {
    const { maxPrompts, teacher: teacherSpec, sampling, train, prompts: promptsFile } = context.options;
    const { constitution } = context;
    let teacherModel: Awaited<ReturnType<typeof context.languageModel>>;
    if (teacherSpec !== undefined) teacherModel = await context.languageModel(teacherSpec);
    else {
      const adapter = await context.adapterOf(engraveStage);
      if (!adapter || !context.trainBase) {
        throw new ConfigError(
          "verbose-clone needs the engraving adapter: run the engrave stage first (it is skipped or unfinished), or set stages.verbose-clone.teacher",
          { path: context.runDir, field: "stages.verbose-clone.teacher" },
        );
      }
      teacherModel = await context.languageModel(context.trainBase, { lora: [adapter] });
    }
    const prompts = [
      ...(await readStagePromptsOrFile(context, promptsFile, promptSourceStages)),
      ...constitution.assistant.identity.map((exchange, index) => ({
        id: recordId("identity-question", index),
        instruction: exchange.user,
      })),
    ].slice(0, maxPrompts);
    const { trainer, options, base } = await context.trainer(train);
    const out = await runVerboseClone({
      teacher: teacherModel,
      store: await context.store(verboseCloneStage),
      sftStore: await context.store(verboseCloneSftStage),
      prompts,
      constitution,
      trainer,
      base,
      trainOptions: { seed: context.seed, ...options },
      seed: context.seed,
      sampling: await withGrammar(context, sampling),
      ...(context.command ? { command: context.command } : {}),
      beforeTraining: () => context.releaseModels(),
      ...progressOptions(context),
    });
    return {
      usage: out.usage,
      adapter: out.train.adapterPath,
      summary: `kept ${out.counts.kept}, rejected ${out.counts.rejected}; ${out.counts.examples} examples, final loss ${out.train.finalLoss.toFixed(4)}`,
    };
  },
  async estimate({ options, constitution, countTokens, upstreamRecords }) {
    const prompt = await countTokens(longestChatPrompt(constitution, "verbose"));
    const trainPrompt = await countTokens(longestChatPrompt(constitution, "concise"));
    const fixed = await countTokens(fixedPromptParts(constitution).chat("verbose"));
    const maxTokens = options.sampling.maxTokens ?? verboseSamplingDefaults.maxTokens;
    const available =
      (options.prompts === undefined ? upstreamRecords("self-instruct") + upstreamRecords("red-team") : 0) +
      constitution.assistant.identity.length;
    const n = Math.min(options.maxPrompts ?? Number.POSITIVE_INFINITY, available);
    return {
      requests: n,
      promptTokens: n * prompt,
      evaluatedPromptTokens: n * prompt,
      completionTokens: n * maxTokens,
      trainTokens: trainingTokens(options.train, { examples: n, exampleTokens: trainPrompt + maxTokens }),
      records: n,
      recordTokens: maxTokens,
      prompts: [
        {
          label: "teacher prompt",
          tokens: prompt,
          minTokens: fixed,
          maxTokens,
          maxTokensField: "sampling.maxTokens",
          // The default teacher is the training base on the run's engine settings; a teacher of its own is not checked.
          role: options.teacher === undefined ? "generator" : "teacher",
        },
      ],
      notes: [`the teacher answers ${n} prompts; every answer kept and trained on`],
    };
  },
  report: {
    [verboseCloneStage]: {
      panels: ["answers"],
      view: answerView,
    },
    [verboseCloneSftStage]: sftReport,
  },
});
