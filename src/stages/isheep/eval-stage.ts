/**
 * I-SHEEP step 7: a cheap per-round figure. The round's trained model (base + this round's adapter) answers a fixed
 * sample of the seed tasks — the same probes every round — and a fixed rater (the base by default) scores each answer
 * with the self-assessment prompts; the figure is the mean score (1-10) over both aspects. Round 1 also scores the
 * base model, so the figure starts at round 0. It is the base model's judgement, not a benchmark: for those, run
 * `selfalign eval` on a round's adapter. Greedy decoding by default, so a figure moves only when the model does.
 */
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import type { LanguageModel } from "../../backends/language-model.js";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import type { Manifest } from "../../run-store/index.js";
import { recordId } from "../../run-store/index.js";
import { withGrammar } from "../shared/grammar.js";
import { sampleWithoutReplacement, seededRandom } from "../shared/random.js";
import { samplingWithDefaults } from "../shared/record-schemas.js";
import { usageSince } from "../shared/stage-usage.js";
import { answerItems } from "./answer-items.js";
import { answerPromptLengths, ratingWork } from "./estimate-prompts.js";
import { evaluatedPromptTokens } from "../shared/estimate-prompts.js";
import { pairReport } from "./answers-stage.js";
import { answerStop, type RatingAspect, ratingAspects } from "./prompt.js";
import { rateItems } from "./rate-items.js";
import { ratingReport } from "./rate-stage.js";
import {
  type PairRecord,
  pairRecordSchema,
  pairRejectedSchema,
  probeModelSchema,
  type RatingRecord,
  ratingRecordSchema,
  ratingRejectedSchema,
} from "./records.js";
import { isheepStages } from "./stage-names.js";

const probeRatingSchema = ratingRecordSchema.extend({ model: probeModelSchema });
const probeAnswerSchema = pairRecordSchema.extend({ model: probeModelSchema });

/** The mean score of each model's parsed ratings: overall and per aspect, with the counts behind it. */
export function probeFigures(ratings: readonly RatingRecord[], model: string) {
  const mine = ratings.filter((rating) => rating.model === model);
  const mean = (values: number[]) =>
    values.length === 0 ? undefined : values.reduce((sum, value) => sum + value, 0) / values.length;
  const of = (aspect: RatingAspect) =>
    mean(mine.filter((rating) => rating.aspect === aspect).map((rating) => rating.score));
  return {
    score: mean(mine.map((rating) => rating.score)),
    quality: of("quality"),
    following: of("following"),
    ratings: mine.length,
  };
}

/** Greedy probe answers of at most 256 tokens, rated in at most 64. */
const evalAnswerDefaults = { temperature: 0, maxTokens: 256, stop: [answerStop] };
const evalRatingDefaults = { temperature: 0, maxTokens: 64 };

const finite = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);

export const evalDefinition = defineStage({
  name: isheepStages.eval,
  summary: "I-SHEEP 7: the round's model answers fixed seed-task probes, the base rates them: a per-round score.",
  folders: [
    { name: isheepStages.eval, kept: probeRatingSchema, rejected: ratingRejectedSchema },
    { name: isheepStages.evalAnswers, kept: probeAnswerSchema, rejected: pairRejectedSchema },
  ],
  upstream: [isheepStages.train],
  options: z.strictObject({
    probes: z.number().int().min(0).default(20).describe("seed tasks answered and rated each round (0: no eval)"),
    baseline: z.boolean().default(true).describe("round 1 also scores the base model (round 0 of the figure)"),
    rater: z.enum(["base", "current"]).default("base").describe("who rates: the base (fixed) or the round's model"),
    answerSampling: samplingWithDefaults(evalAnswerDefaults),
    ratingSampling: samplingWithDefaults(evalRatingDefaults),
  }),
  amountOptions: [],
  models: ["generator"],
  async run(context) {
    const { probes, baseline, rater, answerSampling, ratingSampling } = context.options;
    const round = context.round?.index ?? 1;
    const ratingsStore = await context.store(isheepStages.eval);
    if (probes === 0) return { usage: { promptTokens: 0, completionTokens: 0 }, summary: "off (probes: 0)" };
    const answersStore = await context.store(isheepStages.evalAnswers);
    const used = usageSince(ratingsStore, answersStore);
    const adapter = await context.adapterOf(isheepStages.train);
    if (!adapter) {
      throw new ConfigError(
        `${ratingsStore.stage}: round ${round} has no trained adapter to evaluate; run its train stage first`,
        {
          path: context.runDir,
        },
      );
    }
    const base = await context.model("generator", { base: true });
    const models: Array<{ label: string; backend: LanguageModel }> = [
      { label: `round-${round}`, backend: await context.model("generator", { adapter }) },
      ...(baseline && round === 1 ? [{ label: "base", backend: base }] : []),
    ];
    const raterModel = rater === "base" ? base : models[0]!.backend;
    const answering = await withGrammar(context, answerSampling, "answerSampling.grammar");
    const rating = await withGrammar(context, ratingSampling, "ratingSampling.grammar");
    // The same probes every round: drawn from the seed tasks with the run's seed only.
    const sample = sampleWithoutReplacement(
      seededRandom(isheepStages.eval, context.seed),
      context.constitution.seedTasks,
      probes,
    );
    for (const { label, backend } of models) {
      await answerItems({
        backend,
        store: answersStore,
        items: sample.map((task) => ({
          id: recordId(isheepStages.evalAnswers, label, task.id),
          parentId: task.id,
          instruction: task.instruction,
          input: task.input ?? "",
          fields: { model: label },
        })),
        sampling: answering,
        seed: context.seed,
        ...progressOptions(context),
      });
    }
    const answers = await answersStore.readRecords<PairRecord>();
    await rateItems({
      backend: raterModel,
      store: ratingsStore,
      items: ratingAspects.flatMap((aspect) =>
        answers.map((answer) => ({
          id: recordId(isheepStages.eval, answer.id, aspect),
          parentId: answer.id,
          aspect,
          instruction: answer.instruction,
          input: answer.input,
          output: answer.output,
          fields: { model: String(answer.model) },
        })),
      ),
      sampling: rating,
      seed: context.seed,
      ...progressOptions(context),
    });
    const ratings = await ratingsStore.readRecords<RatingRecord>();
    const figures = probeFigures(ratings, `round-${round}`);
    const extra = ratingsStore.manifest.extra;
    extra.score = figures.score ?? null;
    extra.quality = figures.quality ?? null;
    extra.following = figures.following ?? null;
    extra.ratings = figures.ratings;
    if (baseline && round === 1) extra.baseScore = probeFigures(ratings, "base").score ?? null;
    await ratingsStore.saveManifest();
    const score = finite(extra.score) ? extra.score.toFixed(2) : "none (no readable rating)";
    const baseText = finite(extra.baseScore) ? `, base ${extra.baseScore.toFixed(2)}` : "";
    return { usage: used(), summary: `probe score ${score}${baseText} over ${figures.ratings} ratings` };
  },
  async estimate({ options, constitution, countTokens, noPrefixReuse, round }) {
    const { probes, baseline, answerSampling, ratingSampling } = options;
    const answerTokens = answerSampling.maxTokens ?? evalAnswerDefaults.maxTokens;
    const ratingTokens = ratingSampling.maxTokens ?? evalRatingDefaults.maxTokens;
    const index = round?.index ?? 1;
    const models = baseline && index === 1 ? 2 : 1;
    const answers = models * Math.min(probes, constitution.seedTasks.length);
    const answer = await answerPromptLengths(constitution, countTokens);
    const rating = await ratingWork(constitution, countTokens, {
      aspects: ratingAspects,
      pairs: answers,
      answer: answerTokens,
      noPrefixReuse,
    });
    return {
      requests: answers + rating.requests,
      promptTokens: answers * answer.tokens + rating.promptTokens,
      // Each model answering evaluates the shared start once.
      evaluatedPromptTokens:
        models *
          evaluatedPromptTokens({
            prompts: answers / models,
            tokens: answer.tokens,
            shared: answer.shared,
            noPrefixReuse,
          }) +
        rating.evaluatedPromptTokens,
      completionTokens: answers * answerTokens + rating.requests * ratingTokens,
      trainTokens: 0,
      records: rating.requests,
      prompts:
        answers === 0
          ? []
          : [
              {
                label: "probe prompt",
                tokens: answer.tokens,
                minTokens: answer.minTokens,
                maxTokens: answerTokens,
                maxTokensField: "answerSampling.maxTokens",
                role: "generator",
              },
              {
                label: "probe rating prompt",
                tokens: rating.longest.tokens,
                minTokens: rating.longest.minTokens,
                maxTokens: ratingTokens,
                maxTokensField: "ratingSampling.maxTokens",
                role: "generator",
              },
            ],
      notes: [
        answers === 0
          ? "off (probes: 0)"
          : `${answers / models} probes answered by ${models === 2 ? "the round's model and the base (round 1's baseline)" : "the round's model"}, each answer rated on ${ratingAspects.length} aspects`,
      ],
    };
  },
  report: {
    [isheepStages.eval]: {
      view: (record, kept) => ({
        ...ratingReport.view(record, kept),
        instruction: `[${String(record.model)}] ${String(record.instruction ?? "")}`,
      }),
      figures: (manifest: Manifest): Record<string, number> => ({
        ...(finite(manifest.extra.score) ? { "eval score": manifest.extra.score } : {}),
        ...(finite(manifest.extra.baseScore) ? { "eval score (base)": manifest.extra.baseScore } : {}),
      }),
    },
    [isheepStages.evalAnswers]: { ...pairReport, panels: [] },
  },
});
