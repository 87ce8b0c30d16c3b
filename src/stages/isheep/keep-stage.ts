/**
 * I-SHEEP step 5 (method-spec C.5): keep the pairs whose ratings are above the threshold (C = 8 keeps 9 and 10) on
 * both aspects, or on the one chosen. A pair whose needed rating could not be read is dropped as `unrated`. The
 * round's kept rate (kept / answered) is written to the manifest for the report and early stopping.
 */
import { passThroughEstimate } from "../shared/estimate-prompts.js";
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import type { Manifest } from "../../run-store/index.js";
import { recordId } from "../../run-store/index.js";
import { type RatingAspect, ratingAspects } from "./prompt.js";
import {
  type KeptPair,
  keptPairRejectedSchema,
  keptPairSchema,
  type PairRecord,
  type RatingRecord,
} from "./records.js";
import { isheepStages } from "./stage-names.js";

export const ratingChoices = ["both", "quality", "following"] as const;

const numberIn = (manifest: Manifest, name: string) => {
  const value = manifest.extra[name];
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
};

export const keepDefinition = defineStage({
  name: isheepStages.keep,
  summary: "I-SHEEP 5: keep pairs rated above the threshold on both aspects, or on the chosen one (C.5).",
  folders: [{ name: isheepStages.keep, kept: keptPairSchema, rejected: keptPairRejectedSchema }],
  upstream: [isheepStages.rate, isheepStages.filter, isheepStages.answers],
  options: z.strictObject({
    threshold: z.number().min(0).max(10).default(8).describe("keep a pair when its scores are above this"),
    ratings: z.enum(ratingChoices).default("both").describe("which ratings must pass"),
  }),
  amountOptions: [],
  models: [],
  async run(context) {
    const { threshold, ratings } = context.options;
    const needed: readonly RatingAspect[] = ratings === "both" ? ratingAspects : [ratings];
    const pairs = await context.upstreamRecords<PairRecord>(isheepStages.filter);
    const answered = (await context.upstreamRecords(isheepStages.answers)).length;
    const scores = new Map<string, number>();
    for (const rating of await context.upstreamRecords<RatingRecord>(isheepStages.rate))
      scores.set(`${rating.parentId}/${rating.aspect}`, rating.score);
    const store = await context.store();
    await store.processItems({
      items: pairs.map((pair) => ({ id: recordId(store.stage, pair.id), pair })),
      ...progressOptions(context),
      process: async ({ id, pair }) => {
        const score = (aspect: RatingAspect) => scores.get(`${pair.id}/${aspect}`) ?? null;
        const fields = {
          id,
          parentId: pair.id,
          instruction: pair.instruction,
          input: pair.input,
          output: pair.output,
          quality: score("quality"),
          following: score("following"),
        };
        const unrated = needed.filter((aspect) => score(aspect) === null);
        if (unrated.length > 0) {
          const reason = `no readable ${unrated.join(" or ")} rating (see the ${isheepStages.rate} rejections)`;
          return { rejected: { ...fields, filter: "unrated", reason } };
        }
        const low = needed.filter((aspect) => score(aspect)! <= threshold);
        if (low.length > 0) {
          const reason = `${low.map((aspect) => `${aspect} ${score(aspect)}`).join(", ")} not above ${threshold}`;
          return { rejected: { ...fields, filter: "below-threshold", reason } };
        }
        const kept: KeptPair = { ...fields, ended: pair.finishReason === "stop" };
        return { kept };
      },
    });
    const kept = store.manifest.counts.kept;
    store.manifest.extra.answered = answered;
    store.manifest.extra.keptRate = answered === 0 ? 0 : kept / answered;
    await store.saveManifest();
    return {
      usage: { promptTokens: 0, completionTokens: 0 },
      summary: `kept ${kept} of ${answered} answered (${answered === 0 ? 0 : ((100 * kept) / answered).toFixed(1)}%)`,
    };
  },
  async estimate({ upstreamRecords, upstreamRecordTokens }) {
    return passThroughEstimate(
      upstreamRecords(isheepStages.filter),
      upstreamRecordTokens(isheepStages.filter),
      "no model; every pair rated above the threshold (the paper kept 50-70%)",
    );
  },
  report: {
    [isheepStages.keep]: {
      view: (record) => ({
        instruction: String(record.instruction ?? ""),
        input: String(record.input ?? ""),
        thoughts: `quality ${String(record.quality)}, following ${String(record.following)}`,
        output: String(record.output ?? ""),
        principles: [],
      }),
      figures: (manifest): Record<string, number> => {
        const rate = numberIn(manifest, "keptRate");
        return rate === undefined ? {} : { "kept rate": rate };
      },
    },
  },
});
