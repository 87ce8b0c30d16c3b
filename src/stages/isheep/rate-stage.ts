/**
 * I-SHEEP step 4 (method-spec C.4): self-assessment. The rater — the round's model as in Algorithm 1, or the base as
 * the released script did (pitfall C.9.5) — scores every filtered pair 1-10 for quality and for instruction-following,
 * quality first. Each rating is one record; one the parser cannot read is a counted `rating-parse` rejection.
 */
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import { recordId } from "../../run-store/index.js";
import { withGrammar } from "../shared/grammar.js";
import { samplingWithDefaults } from "../shared/record-schemas.js";
import { usageSince } from "../shared/stage-usage.js";
import { ratingAspects } from "./prompt.js";
import { rateItems } from "./rate-items.js";
import { answerSamplingDefaults } from "./answers-stage.js";
import { ratingWork } from "./estimate-prompts.js";
import { type PairRecord, ratingRecordSchema, ratingRejectedSchema } from "./records.js";
import { isheepStages } from "./stage-names.js";

export const raters = ["current", "base"] as const;

/** C.4's sampling (T 1.0, top-p 0.95); 128 new tokens, where the reference allowed 1000 for a score and a sentence. */
export const ratingSamplingDefaults = { temperature: 1, topP: 0.95, maxTokens: 128 };

/** How the record browser and the ratings panel show a rating (kept or failed). */
export const ratingReport = {
  panels: ["ratings"] as const,
  view: (record: Record<string, unknown>, kept: boolean) => ({
    instruction: String(record.instruction ?? ""),
    input: String(record.input ?? ""),
    thoughts: kept
      ? `${String(record.aspect)} ${String(record.score)}: ${String(record.explanation ?? "")}`
      : String(record.text ?? ""),
    output: String(record.output ?? ""),
    principles: [],
    rating: {
      subject: String(record.parentId ?? ""),
      aspect: String(record.aspect ?? ""),
      ...(kept && typeof record.score === "number" ? { score: record.score } : {}),
    },
  }),
};

export const rateDefinition = defineStage({
  name: isheepStages.rate,
  summary: "I-SHEEP 4: rate each pair 1-10 for quality and for instruction-following (C.4).",
  folders: [{ name: isheepStages.rate, kept: ratingRecordSchema, rejected: ratingRejectedSchema }],
  upstream: [isheepStages.filter],
  options: z.strictObject({
    rater: z.enum(raters).default("current").describe("who rates: the round's model (Algorithm 1) or the base"),
    aspects: z
      .array(z.enum(ratingAspects))
      .min(1)
      .default([...ratingAspects])
      .describe("aspects to rate (JSON list)"),
    sampling: samplingWithDefaults(ratingSamplingDefaults),
    concurrency: positiveInt.optional().describe("requests in flight (default: the backend's parallelism)"),
  }),
  amountOptions: ["concurrency"],
  models: ["generator"],
  needsUpstreamRecords: true,
  async run(context) {
    const { rater, aspects, sampling, concurrency } = context.options;
    const pairs = await context.upstreamRecords<PairRecord>(isheepStages.filter);
    const store = await context.store();
    const used = usageSince(store);
    // Every pair's quality first, then every pair's following (the reference's two passes).
    const items = aspects.flatMap((aspect) =>
      pairs.map((pair) => ({
        id: recordId(store.stage, pair.id, aspect),
        parentId: pair.id,
        aspect,
        instruction: pair.instruction,
        input: pair.input,
        output: pair.output,
      })),
    );
    await rateItems({
      backend: await context.model("generator", { base: rater === "base" }),
      store,
      items,
      sampling: await withGrammar(context, sampling),
      seed: context.seed,
      ...(concurrency === undefined ? {} : { concurrency }),
      ...progressOptions(context),
    });
    const { kept, byFilter } = store.manifest.counts;
    return {
      usage: used(),
      warnings: [...store.warnings],
      summary: `${kept} ratings, ${byFilter["rating-parse"] ?? 0} unreadable`,
    };
  },
  async estimate({ options, constitution, countTokens, upstreamRecords, upstreamRecordTokens, noPrefixReuse }) {
    const pairs = upstreamRecords(isheepStages.filter);
    const answer = upstreamRecordTokens(isheepStages.filter) ?? answerSamplingDefaults.maxTokens;
    const maxTokens = options.sampling.maxTokens ?? ratingSamplingDefaults.maxTokens;
    const work = await ratingWork(constitution, countTokens, {
      aspects: options.aspects,
      pairs,
      answer,
      noPrefixReuse,
    });
    return {
      requests: work.requests,
      promptTokens: work.promptTokens,
      evaluatedPromptTokens: work.evaluatedPromptTokens,
      completionTokens: work.requests * maxTokens,
      trainTokens: 0,
      records: work.requests,
      prompts: [
        {
          label: "rating prompt",
          tokens: work.longest.tokens,
          minTokens: work.longest.minTokens,
          maxTokens,
          maxTokensField: "sampling.maxTokens",
          role: "generator",
        },
      ],
      notes: [`${pairs} pairs x ${options.aspects.length} aspects, answers of ${answer} tokens`],
    };
  },
  report: { [isheepStages.rate]: ratingReport },
});
