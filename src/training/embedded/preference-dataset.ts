/**
 * Preference pairs (prompt, chosen, rejected) -> two token sequences each, tokenised like SFT examples
 * (BOS + tokens(prompt + response), the response scored from where that departs from BOS + tokens(prompt)).
 * A pair stays whole: when one side is dropped, the pair is.
 */
import { ConfigError } from "../../errors/index.js";
import type { Examples, OverlongPolicy, PreferenceExample } from "../trainer.js";
import { checkUsable, type TokenizedSequence, type TrainTokenizer, tokenizeCompletion } from "./sft-dataset.js";

export interface TokenizedPair {
  /** Index of the pair in the input. */
  index: number;
  chosen: TokenizedSequence;
  rejected: TokenizedSequence;
}

export interface TokenizePairsResult {
  pairs: TokenizedPair[];
  dropped: number;
  truncated: number;
  warnings: string[];
}

export async function tokenizePairs(
  source: Examples<PreferenceExample>,
  tokenizer: TrainTokenizer,
  maxLength: number,
  overlong: OverlongPolicy,
  options: { label?: string; allowEmpty?: boolean } = {},
): Promise<TokenizePairsResult> {
  const label = options.label ?? "pair";
  const pairs: TokenizedPair[] = [];
  const warnings: string[] = [];
  let dropped = 0;
  let truncated = 0;
  let index = 0;
  for await (const example of source as AsyncIterable<PreferenceExample>) {
    const i = index++;
    const fields = ["prompt", "chosen", "rejected"] as const;
    if (fields.some((name) => typeof example?.[name] !== "string")) {
      throw new ConfigError(`${label} ${i} must have string fields "prompt", "chosen" and "rejected"`, {
        field: `examples[${i}]`,
      });
    }
    const side = (response: "chosen" | "rejected") =>
      tokenizeCompletion(
        tokenizer,
        example.prompt,
        example[response],
        maxLength,
        overlong,
        `${label} ${i}: the ${response} response`,
        `examples[${i}].${response}`,
      );
    const chosen = side("chosen");
    const rejected = side("rejected");
    if ("dropped" in chosen || "dropped" in rejected) {
      dropped++;
      for (const outcome of [chosen, rejected]) if ("dropped" in outcome) warnings.push(outcome.dropped);
      continue;
    }
    if (chosen.truncated || rejected.truncated) truncated++;
    pairs.push({ index: i, chosen: chosen.kept, rejected: rejected.kept });
  }
  if (!options.allowEmpty) checkUsable(index, pairs.length, warnings);
  return { pairs, dropped, truncated, warnings };
}
