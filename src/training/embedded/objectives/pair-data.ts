/** The data of the pair objectives (preference, reward): tokenised pairs split into training and held-out sets. */
import type { Examples, PreferenceExample } from "../../trainer.js";
import { type TokenizedPair, tokenizePairs } from "../preference-dataset.js";
import type { ObjectiveBuildContext } from "./build-context.js";
import { type Objective, type Split, splitHeldOut } from "./objective.js";

export interface PairData extends Pick<Objective, "warnings" | "dataCounts"> {
  /** The training pairs, and the held-out ones: a share of the examples plus any given held-out pairs. */
  data: Record<Split, TokenizedPair[]>;
}

export async function pairData(
  examples: Examples<PreferenceExample>,
  evalExamples: Examples<PreferenceExample> | undefined,
  { tokenizer, maxLength, options }: ObjectiveBuildContext,
): Promise<PairData> {
  const tokenized = await tokenizePairs(examples, tokenizer, maxLength, options.overlong);
  const given = evalExamples
    ? await tokenizePairs(evalExamples, tokenizer, maxLength, options.overlong, {
        label: "held-out pair",
        allowEmpty: true,
      })
    : undefined;
  const split = splitHeldOut(tokenized.pairs, options.evalFraction, options.seed);
  return {
    data: { train: split.train, eval: [...split.eval, ...(given?.pairs ?? [])] },
    warnings: [...tokenized.warnings, ...(given?.warnings ?? [])],
    dataCounts: { used: tokenized.pairs.length, truncated: tokenized.truncated, dropped: tokenized.dropped },
  };
}
