/**
 * The longest I-SHEEP prompts for the stages' estimates: the answering prompt and the rating prompts around the
 * longest seed task (what generated tasks are expected to look like at most) and an answer of a given length.
 */
import type { Constitution } from "../../constitution/index.js";
import { commonPrefix, evaluatedPromptTokens } from "../shared/estimate-prompts.js";
import { longestQuery } from "../shared/longest-prompts.js";
import { answerPrompt, type RatingAspect, ratingPrompt } from "./prompt.js";

type CountTokens = (text: string) => Promise<number>;

export interface PromptLengths {
  /** The longest prompt. */
  tokens: number;
  /** Its fixed part (no request, no answer). */
  minTokens: number;
  /** What every such prompt starts with (evaluated once when prefixes are reused). */
  shared: number;
}

/** The answering prompt (C.2) of the longest seed task. */
export async function answerPromptLengths(
  constitution: Constitution,
  countTokens: CountTokens,
): Promise<PromptLengths> {
  const query = longestQuery(constitution);
  return {
    tokens: await countTokens(answerPrompt(query.instruction, query.input)),
    minTokens: await countTokens(answerPrompt("")),
    shared: await countTokens(commonPrefix(answerPrompt("a"), answerPrompt("b"))),
  };
}

/** The rating prompt (C.4) of one aspect: the longest seed task with an answer of `answer` tokens. */
export async function ratingPromptLengths(
  constitution: Constitution,
  countTokens: CountTokens,
  aspect: RatingAspect,
  answer: number,
): Promise<PromptLengths> {
  const query = longestQuery(constitution);
  return {
    tokens: (await countTokens(ratingPrompt(aspect, query.instruction, query.input, ""))) + answer,
    minTokens: await countTokens(ratingPrompt(aspect, "", "", "")),
    shared: await countTokens(commonPrefix(ratingPrompt(aspect, "a", "", ""), ratingPrompt(aspect, "b", "", ""))),
  };
}

/** Ratings of `pairs` answers on each aspect (every pair's first aspect, then the next): requests and tokens. */
export async function ratingWork(
  constitution: Constitution,
  countTokens: CountTokens,
  options: { aspects: readonly RatingAspect[]; pairs: number; answer: number; noPrefixReuse: boolean },
): Promise<{ requests: number; promptTokens: number; evaluatedPromptTokens: number; longest: PromptLengths }> {
  let promptTokens = 0;
  let evaluated = 0;
  let longest: PromptLengths | undefined;
  for (const aspect of options.aspects) {
    const lengths = await ratingPromptLengths(constitution, countTokens, aspect, options.answer);
    promptTokens += options.pairs * lengths.tokens;
    evaluated += evaluatedPromptTokens({
      prompts: options.pairs,
      tokens: lengths.tokens,
      shared: lengths.shared,
      noPrefixReuse: options.noPrefixReuse,
    });
    if (!longest || lengths.tokens > longest.tokens) longest = lengths;
  }
  return {
    requests: options.pairs * options.aspects.length,
    promptTokens,
    evaluatedPromptTokens: evaluated,
    longest: longest ?? { tokens: 0, minTokens: 0, shared: 0 },
  };
}
