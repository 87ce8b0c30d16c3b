/**
 * I-SHEEP step 2 (method-spec C.2): the round's model answers each of the round's prompts zero-shot, in the one
 * prompt format used for answering, rating and training (the reference used a bare concatenation here).
 */
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import { recordId } from "../../run-store/index.js";
import { mergeOnePer } from "../shared/merge-one-per.js";
import { evaluatedPromptTokens } from "../shared/estimate-prompts.js";
import { withGrammar } from "../shared/grammar.js";
import { samplingWithDefaults } from "../shared/record-schemas.js";
import { usageSince } from "../shared/stage-usage.js";
import { answerItems } from "./answer-items.js";
import { answerPromptLengths } from "./estimate-prompts.js";
import { answerStop } from "./prompt.js";
import { pairRecordSchema, pairRejectedSchema } from "./records.js";
import { isheepStages } from "./stage-names.js";
import { answerView } from "../shared/report-views.js";

/** C.2's sampling: T 1.0, top-p 0.95, 1000 new tokens; the next `###` heading ends the answer. */
export const answerSamplingDefaults = { temperature: 1, topP: 0.95, maxTokens: 1000, stop: [answerStop] };

export const pairReport = {
  panels: ["answers"] as const,
  view: answerView,
};

export const answersDefinition = defineStage({
  name: isheepStages.answers,
  summary: "I-SHEEP 2: the round's model answers its prompts zero-shot (C.2).",
  folders: [{ name: isheepStages.answers, kept: pairRecordSchema, rejected: pairRejectedSchema }],
  upstream: [isheepStages.prompts],
  options: z.strictObject({
    sampling: samplingWithDefaults(answerSamplingDefaults),
    concurrency: positiveInt.optional().describe("requests in flight (default: the backend's parallelism)"),
  }),
  amountOptions: ["concurrency"],
  models: ["generator"],
  needsUpstreamRecords: true,
  async run(context) {
    const { sampling, concurrency } = context.options;
    const prompts = await context.upstreamRecords<{ id: string; instruction: string; input: string }>(
      isheepStages.prompts,
    );
    const store = await context.store();
    const used = usageSince(store);
    await answerItems({
      backend: await context.model("generator"),
      store,
      items: prompts.map((prompt) => ({
        id: recordId(store.stage, prompt.id),
        parentId: prompt.id,
        instruction: prompt.instruction,
        input: prompt.input,
      })),
      sampling: await withGrammar(context, sampling),
      seed: context.seed,
      ...(concurrency === undefined ? {} : { concurrency }),
      ...progressOptions(context),
    });
    const { kept, rejected } = store.manifest.counts;
    return { usage: used(), warnings: [...store.warnings], summary: `answered ${kept}, rejected ${rejected}` };
  },
  async estimate({ options, constitution, countTokens, upstreamRecords, noPrefixReuse }) {
    const prompt = await answerPromptLengths(constitution, countTokens);
    const maxTokens = options.sampling.maxTokens ?? answerSamplingDefaults.maxTokens;
    const n = upstreamRecords(isheepStages.prompts);
    return {
      requests: n,
      promptTokens: n * prompt.tokens,
      evaluatedPromptTokens: evaluatedPromptTokens({ prompts: n, ...prompt, noPrefixReuse }),
      completionTokens: n * maxTokens,
      trainTokens: 0,
      records: n,
      recordTokens: maxTokens,
      prompts: [
        {
          label: "answer prompt",
          tokens: prompt.tokens,
          minTokens: prompt.minTokens,
          maxTokens,
          maxTokensField: "sampling.maxTokens",
          role: "generator",
        },
      ],
      notes: [`answers every one of the round's ${n} prompts`],
    };
  },
  merge: { [isheepStages.answers]: mergeOnePer((record) => String(record.parentId), "another shard answered it") },
  report: { [isheepStages.answers]: pairReport },
});
