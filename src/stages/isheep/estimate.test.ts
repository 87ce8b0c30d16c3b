/** The I-SHEEP train stage's estimate across rounds: total-base trains on every round so far, one-base on its own. */
import { expect, it } from "vitest";
import { defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { trainDefinition } from "./train-stage.js";

it("total-base's round r trains on r rounds' pairs, one-base's on its own round's", async () => {
  const constitution = await loadConstitution(defaultConstitutionDir());
  const estimateAt = async (variant: string, index: number) =>
    trainDefinition.estimate!({
      options: trainDefinition.options.parse({ variant }) as never,
      constitution,
      countTokens: async (text) => text.length,
      upstreamRecords: (stage) => (stage === "isheep-keep" ? 7 : 0),
      upstreamRecordTokens: () => 30,
      noPrefixReuse: false,
      round: { group: "isheep", index, count: 3, options: {} },
    });
  const oneBase = await estimateAt("one-base", 3);
  const totalBase = await estimateAt("total-base", 3);
  expect(oneBase.records).toBe(7);
  expect(totalBase.records).toBe(21);
  expect(totalBase.trainTokens).toBe(3 * oneBase.trainTokens);
  expect((await estimateAt("total-base", 1)).trainTokens).toBe(oneBase.trainTokens);
  // 2 epochs (the paper's) over examples of the answering prompt, the answer and its end marker.
  expect(oneBase.trainTokens % (2 * 7)).toBe(0);
});
