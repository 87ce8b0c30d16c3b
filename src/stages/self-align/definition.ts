/** Stage 2 as data: self-align's options, record schemas, merge rule (one answer per prompt) and report view. */
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import type { StoreRecord } from "../../run-store/index.js";
import { countPrincipleUsage } from "./principle-usage.js";
import { withGrammar } from "../shared/grammar.js";
import { keptRecordSchema, rejectedRecordSchema, samplingWithDefaults } from "../shared/record-schemas.js";
import { longestSelfAlignPrompt, selfAlignMetaPrompt } from "../shared/longest-prompts.js";
import { mergeOnePer } from "../shared/merge-one-per.js";
import { promptSourceStages, promptsFileSchema, readStagePromptsOrFile } from "../shared/stage-prompts.js";
import { runSelfAlign, selfAlignSamplingDefaults, selfAlignStage } from "./run.js";

export const selfAlignRecordSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.string(),
  thoughts: z.string(),
  citedPrinciples: z.array(z.string()),
  output: z.string(),
  finishReason: z.enum(["stop", "length", "abort"]),
  endedTurn: z.boolean(),
  truncated: z.boolean(),
  questionType: z.string().optional(),
  source: z.string().optional(),
  backend: z.string(),
});

export const selfAlignRejectedSchema = rejectedRecordSchema({
  instruction: z.string().optional(),
  input: z.string().optional(),
  thoughts: z.string().optional(),
  completion: z.string().optional(),
});

export const selfAlignOptionsSchema = z.strictObject({
  sampling: samplingWithDefaults(selfAlignSamplingDefaults),
  logitBias: z
    .record(z.string(), z.number())
    .optional()
    .describe('token id -> bias (JSON); default -100 on the first token of "Sorry" (A.4)'),
  prompts: promptsFileSchema,
  maxPrompts: positiveInt.optional().describe("answer only the first n prompts"),
  concurrency: positiveInt.optional().describe("prompts in flight (default: the backend's parallelism)"),
});

export const selfAlignDefinition = defineStage({
  name: selfAlignStage,
  summary: "Stage 2: answer the stage-1 prompts with internal thoughts guided by the principles (A.4).",
  folders: [{ name: selfAlignStage, kept: selfAlignRecordSchema, rejected: selfAlignRejectedSchema }],
  upstream: promptSourceStages,
  options: selfAlignOptionsSchema,
  amountOptions: ["maxPrompts", "concurrency"],
  models: ["generator"],
  // Without a prompt file of its own, it answers the stage-1 prompts.
  needsUpstreamRecords: (options) => options.prompts === undefined,
  flagAliases: {
    target: "maxPrompts",
    "batch-size": "concurrency",
    "max-tokens": "sampling.maxTokens",
    temperature: "sampling.temperature",
  },
  async run(context) {
    const { sampling, logitBias, maxPrompts, concurrency, prompts } = context.options;
    const inputs = await readStagePromptsOrFile(context, prompts, promptSourceStages);
    const out = await runSelfAlign({
      backend: await context.model("generator"),
      store: await context.store(),
      constitution: context.constitution,
      inputs: inputs.slice(0, maxPrompts),
      seed: context.seed,
      sampling: await withGrammar(context, sampling),
      ...(concurrency === undefined ? {} : { concurrency }),
      ...(logitBias
        ? { logitBias: Object.fromEntries(Object.entries(logitBias).map(([token, bias]) => [Number(token), bias])) }
        : {}),
      ...progressOptions(context),
    });
    return {
      usage: out.usage,
      warnings: out.warnings,
      summary: `kept ${out.counts.kept}, rejected ${out.counts.rejected}`,
    };
  },
  async estimate({ options, constitution, countTokens, upstreamRecords, noPrefixReuse }) {
    const meta = await countTokens(selfAlignMetaPrompt(constitution));
    const prompt = await countTokens(longestSelfAlignPrompt(constitution));
    const maxTokens = options.sampling.maxTokens ?? selfAlignSamplingDefaults.maxTokens;
    const upstream = options.prompts === undefined ? upstreamRecords("self-instruct") + upstreamRecords("red-team") : 0;
    const n = Math.min(options.maxPrompts ?? Number.POSITIVE_INFINITY, upstream);
    return {
      requests: n,
      promptTokens: n * prompt,
      // The meta-prompt is a prefix every request shares: the engine evaluates it once and copies its KV cache.
      evaluatedPromptTokens: noPrefixReuse || n === 0 ? n * prompt : meta + n * (prompt - meta),
      completionTokens: n * maxTokens,
      trainTokens: 0,
      records: n,
      recordTokens: maxTokens,
      prompts: [
        {
          label: "prompt",
          tokens: prompt,
          minTokens: meta,
          maxTokens,
          maxTokensField: "sampling.maxTokens",
          role: "generator",
        },
      ],
      notes: [
        options.prompts === undefined
          ? `answers every stage-1 prompt${options.maxPrompts !== undefined ? ` (at most maxPrompts ${options.maxPrompts})` : ""}; meta-prompt ${meta} tokens`
          : "a prompt file is not read for the estimate: its prompts are not counted",
      ],
    };
  },
  merge: {
    [selfAlignStage]: (context) => {
      const rule = mergeOnePer(
        (record) => String(record.parentId ?? record.id),
        "another shard already answered this prompt",
      )(context);
      return {
        ...rule,
        // Principle usage recounted over the merged answers.
        finish: (store, merged) => {
          store.manifest.extra.principleUsage = countPrincipleUsage(
            merged as Array<{ citedPrinciples: string[] } & StoreRecord>,
            context.constitution.principles.map((principle) => principle.id),
          );
        },
      };
    },
  },
  report: {
    [selfAlignStage]: {
      panels: ["answers"],
      view: (record, kept) => ({
        instruction: String(record.instruction ?? ""),
        input: String(record.input ?? ""),
        thoughts: String(record.thoughts ?? ""),
        output: String((kept ? record.output : (record.answer ?? record.completion)) ?? ""),
        principles: Array.isArray(record.citedPrinciples) ? record.citedPrinciples.map(String) : [],
        ...(typeof record.questionType === "string" ? { questionType: record.questionType } : {}),
      }),
    },
  },
});
