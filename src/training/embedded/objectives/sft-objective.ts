/** SFT (method A.5, principle engraving): cross-entropy of the completion tokens, averaged over a step's tokens. */
import type { Examples, SftExample } from "../../trainer.js";
import { completionTokens, exampleRows, packBatch, type TokenizedExample, tokenizeExamples } from "../sft-dataset.js";
import type { ObjectiveBuildContext } from "./build-context.js";
import { type Objective, sequencesHash, splitHeldOut } from "./objective.js";

export async function buildSftObjective(
  examples: Examples<SftExample>,
  evalExamples: Examples<SftExample> | undefined,
  build: ObjectiveBuildContext,
): Promise<Objective> {
  const { tokenizer, maxLength, options } = build;
  const tokenized = await tokenizeExamples(examples, tokenizer, maxLength, options.overlong);
  const given = evalExamples
    ? await tokenizeExamples(evalExamples, tokenizer, maxLength, options.overlong, {
        label: "held-out example",
        allowEmpty: true,
      })
    : undefined;
  const split = splitHeldOut(tokenized.examples, options.evalFraction, options.seed);
  const data: Record<"train" | "eval", TokenizedExample[]> = {
    train: split.train,
    eval: [...split.eval, ...(given?.examples ?? [])],
  };
  const asItems = (list: TokenizedExample[]) => list.map((e) => ({ index: e.index, sequences: [e] }));
  return {
    kind: "sft",
    trainRows: data.train.map(exampleRows),
    evalRows: data.eval.map(exampleRows),
    params: [],
    grads: [],
    fingerprint: {
      examples: data.train.length,
      data: sequencesHash(asItems(data.train)),
      heldOut: data.eval.length,
      heldOutData: sequencesHash(asItems(data.eval)),
    },
    warnings: [...tokenized.warnings, ...(given?.warnings ?? [])],
    dataCounts: { used: tokenized.examples.length, truncated: tokenized.truncated, dropped: tokenized.dropped },
    normaliser: (split, items) => completionTokens(data[split], items),
    run: ({ model, lora, grads, options: lossOptions }, split, items, normaliser) => {
      const batch = packBatch(data[split], items, normaliser);
      const loss = model.lossAndGradient(batch, lora, grads, lossOptions);
      return { loss, tokens: batch.tokens.length, pairs: 0, correct: 0, margin: 0 };
    },
  };
}
