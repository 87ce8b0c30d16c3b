/** Stage 3 as data: principle engraving's options, the SFT record schema and report view. */
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { trainConfigSchema } from "../../pipeline/train-config.js";
import { trainingTokens } from "../shared/estimate-training.js";
import { longestChatPrompt } from "../shared/longest-prompts.js";
import { keptRecordSchema, rejectedRecordSchema } from "../shared/record-schemas.js";
import { promptStyles } from "./prompt.js";
import { engraveStage, runEngrave } from "./run.js";
import { answerView } from "../shared/report-views.js";

/** One SFT example as stored (the Alpaca and chat exports are written beside it). */
export const sftRecordSchema = keptRecordSchema({
  source: z.string(),
  instruction: z.string(),
  input: z.string(),
  output: z.string(),
  style: z.enum(promptStyles),
  prompt: z.string(),
  completion: z.string(),
});

export const engraveOptionsSchema = z.strictObject({
  includeIdentity: z.boolean().default(true).describe("add the constitution's identity exchanges"),
  train: trainConfigSchema.prefault({}),
});

export const sftReport = {
  panels: [] as const,
  view: answerView,
};

export const engraveDefinition = defineStage({
  name: engraveStage,
  summary: "Stage 3: SFT set without principles, exemplars or thoughts; LoRA on the base model (A.5).",
  folders: [{ name: engraveStage, kept: sftRecordSchema, rejected: rejectedRecordSchema() }],
  upstream: ["self-align"],
  options: engraveOptionsSchema,
  amountOptions: [],
  models: ["trainer"],
  async run(context) {
    const { includeIdentity, train } = context.options;
    const answers = (await context.upstreamRecords<Record<string, unknown> & { id: string }>("self-align")).map(
      (record) => ({
        id: record.id,
        instruction: String(record.instruction),
        input: String(record.input ?? ""),
        output: String(record.output),
        ended: record.endedTurn === true,
      }),
    );
    const { trainer, options, base } = await context.trainer(train);
    const out = await runEngrave({
      store: await context.store(),
      answers,
      constitution: context.constitution,
      includeIdentity,
      ...(context.command ? { command: context.command } : {}),
      trainer,
      base,
      trainOptions: { seed: context.seed, ...options },
      ...progressOptions(context),
    });
    return {
      usage: { promptTokens: 0, completionTokens: 0 },
      adapter: out.train.adapterPath,
      summary: `${out.counts.examples} examples (${out.counts.identity} identity), ${out.train.steps} steps, final loss ${out.train.finalLoss.toFixed(4)}`,
    };
  },
  async estimate({ options, constitution, countTokens, upstreamRecords, upstreamRecordTokens }) {
    const prompt = await countTokens(longestChatPrompt(constitution, "concise"));
    const identity = options.includeIdentity ? constitution.assistant.identity.length : 0;
    const examples = upstreamRecords("self-align") + identity;
    const answer = upstreamRecordTokens("self-align") ?? 256;
    return {
      requests: 0,
      promptTokens: 0,
      evaluatedPromptTokens: 0,
      completionTokens: 0,
      trainTokens: trainingTokens(options.train, { examples, exampleTokens: prompt + answer }),
      records: examples,
      prompts: [],
      notes: [`${examples} examples of at most ${prompt} + ${answer} tokens`],
    };
  },
  report: { [engraveStage]: sftReport },
});
