/**
 * I-SHEEP step 3 (method-spec C.3): the heuristic rule filter on the round's (prompt, answer) pairs, each rejection
 * named by its rule. No model; a changed rule set re-filters without answering again.
 */
import { passThroughEstimate } from "../shared/estimate-prompts.js";
import { z } from "zod";
import { defineStage, progressOptions } from "../../pipeline/stage-definition.js";
import { recordId } from "../../run-store/index.js";
import { pairReport } from "./answers-stage.js";
import { ruleFilterPair, ruleFilterNames } from "./filters.js";
import { type PairRecord, pairRecordSchema, pairRejectedSchema } from "./records.js";
import { isheepStages } from "./stage-names.js";

export const filterDefinition = defineStage({
  name: isheepStages.filter,
  summary: "I-SHEEP 3: the heuristic rule filter on (prompt, answer) pairs, its over-broad rules narrowed (C.3).",
  folders: [{ name: isheepStages.filter, kept: pairRecordSchema, rejected: pairRejectedSchema }],
  upstream: [isheepStages.answers],
  options: z.strictObject({
    disabled: z.array(z.enum(ruleFilterNames)).default([]).describe("rules to turn off (JSON list of names)"),
  }),
  amountOptions: [],
  models: [],
  async run(context) {
    const answers = await context.upstreamRecords<PairRecord>(isheepStages.answers);
    const store = await context.store();
    await store.processItems({
      items: answers.map((answer) => ({ id: recordId(store.stage, answer.id), answer })),
      ...progressOptions(context),
      process: async ({ id, answer }) => {
        const result = ruleFilterPair(answer, { disabled: context.options.disabled });
        const record = { ...answer, id, parentId: answer.id, output: result.output };
        if (result.ok) return { kept: record };
        return { rejected: { ...record, filter: result.filter, reason: result.reason } };
      },
    });
    const { kept, rejected } = store.manifest.counts;
    return { usage: { promptTokens: 0, completionTokens: 0 }, summary: `kept ${kept}, rejected ${rejected}` };
  },
  async estimate({ upstreamRecords, upstreamRecordTokens }) {
    return passThroughEstimate(
      upstreamRecords(isheepStages.answers),
      upstreamRecordTokens(isheepStages.answers),
      "no model; every pair passes the rules",
    );
  },
  report: { [isheepStages.filter]: { ...pairReport, panels: [] } },
});
