import type { StageEstimate } from "../../pipeline/stage-definition.js";

/**
 * Pieces the stages' `estimate` hooks share: the text every prompt of a kind starts with (what the engine evaluates
 * once and copies to the other sequences), and the prompt tokens evaluated when that prefix is shared.
 */

/** The longest common start of two texts: build a prompt twice with different requests to get its shared prefix. */
export function commonPrefix(first: string, second: string): string {
  let at = 0;
  while (at < first.length && at < second.length && first[at] === second[at]) at++;
  return first.slice(0, at);
}

export interface EvaluatedPromptTokens {
  /** Prompts evaluated (a prompt sent twice at once, as salmon-responses' two samples, counts once). */
  prompts: number;
  /** Tokens of each, at the longest. */
  tokens: number;
  /** Tokens every one of them starts with. */
  shared: number;
  /** engine.deterministic: every request evaluates its whole prompt. */
  noPrefixReuse: boolean;
}

/** The shared prefix once, then what is each prompt's own (the whole prompt each time without prefix reuse). */
export function evaluatedPromptTokens({ prompts, tokens, shared, noPrefixReuse }: EvaluatedPromptTokens): number {
  if (noPrefixReuse || prompts === 0) return prompts * tokens;
  return shared + prompts * (tokens - shared);
}

/**
 * The estimate of a stage that sends `calls` self-instruct-style requests (the whole prompt each, demos drawn anew),
 * each keeping `keptPerCall` records up to `target`.
 */
export function generationCallsEstimate(o: {
  calls: number;
  promptTokens: number;
  fixedTokens: number;
  maxTokens: number;
  keptPerCall: number;
  target: number;
  notes: string[];
}): StageEstimate {
  return {
    requests: o.calls,
    promptTokens: o.calls * o.promptTokens,
    evaluatedPromptTokens: o.calls * o.promptTokens,
    completionTokens: o.calls * o.maxTokens,
    trainTokens: 0,
    records: Math.min(o.target, o.calls * o.keptPerCall),
    prompts: [
      {
        label: "prompt",
        tokens: o.promptTokens,
        minTokens: o.fixedTokens,
        maxTokens: o.maxTokens,
        maxTokensField: "sampling.maxTokens",
        role: "generator",
      },
    ],
    notes: o.notes,
  };
}

/** The estimate of a stage with no model that keeps every record of upstream (`records`, of `recordTokens` each). */
export function passThroughEstimate(records: number, recordTokens: number | undefined, note: string): StageEstimate {
  return {
    requests: 0,
    promptTokens: 0,
    evaluatedPromptTokens: 0,
    completionTokens: 0,
    trainTokens: 0,
    records,
    ...(recordTokens === undefined ? {} : { recordTokens }),
    prompts: [],
    notes: [note],
  };
}
