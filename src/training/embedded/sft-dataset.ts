/**
 * SFT examples -> token sequences with a completion-only loss mask -> length-bucketed, packed micro-batches.
 * Tokenisation follows the reference (A.5): the text is BOS + tokens(prompt + completion), and the loss covers the
 * tokens from the first position where that departs from BOS + tokens(prompt). Normally that is exactly the
 * completion; when a token straddles the boundary (it holds completion text), it is trained on rather than masked.
 */
import { ConfigError } from "../../errors/index.js";
import { seededRandom } from "../../gguf/index.js";
import type { OverlongPolicy, SftExample } from "../trainer.js";
import type { TrainBatch } from "./llama-train-model.js";

export interface TrainTokenizer {
  /** BOS token id, or undefined when the model has none. */
  readonly bos: number | undefined;
  tokenize(text: string): number[];
}

export interface TokenizedExample {
  /** Index of the example in the input. */
  index: number;
  /** BOS + prompt + completion. */
  tokens: Int32Array;
  /** Tokens before the completion (masked out of the loss). */
  promptLength: number;
}

/** Batch rows of an SFT example: every token but the last predicts the next. */
export function exampleRows(example: TokenizedExample): number {
  return example.tokens.length - 1;
}

export interface TokenizeResult {
  examples: TokenizedExample[];
  dropped: number;
  truncated: number;
  warnings: string[];
}

/** One text tokenised for training: BOS + prompt + completion, and where the completion starts. */
export interface TokenizedSequence {
  tokens: Int32Array;
  promptLength: number;
}

/** A sequence, or why it was left out (a warning); `truncated` when its end was cut at `maxLength`. */
export type TokenizeOutcome = { kept: TokenizedSequence; truncated: boolean } | { dropped: string };

/**
 * Tokenise prompt + completion (see the module comment for the boundary). `label` names the text in messages
 * ("example 3", "pair 3: the chosen response"); an overlong text under policy "error" is a ConfigError for `field`.
 */
export function tokenizeCompletion(
  tokenizer: TrainTokenizer,
  prompt: string,
  completion: string,
  maxLength: number,
  overlong: OverlongPolicy,
  label: string,
  field: string,
): TokenizeOutcome {
  const bos = tokenizer.bos === undefined ? [] : [tokenizer.bos];
  const promptTokens = [...bos, ...tokenizer.tokenize(prompt)];
  const full = [...bos, ...tokenizer.tokenize(prompt + completion)];
  let promptLength = 0;
  while (
    promptLength < promptTokens.length &&
    promptLength < full.length &&
    promptTokens[promptLength] === full[promptLength]
  ) {
    promptLength++;
  }
  // The first token is never predicted: with no BOS, a text's first token belongs to the prompt.
  promptLength = Math.max(promptLength, 1);
  if (promptLength >= full.length) return { dropped: `${label} has an empty completion and was skipped` };
  if (full.length <= maxLength) return { kept: { tokens: Int32Array.from(full), promptLength }, truncated: false };
  const message = `${label} is ${full.length} tokens long (prompt ${promptLength} + completion ${full.length - promptLength}), longer than the context of ${maxLength} tokens`;
  if (overlong === "error") {
    throw new ConfigError(
      `${message}; raise cutoffLen (--cutoff-len) up to the model's context, set overlong to "truncate" or "drop", or shorten the example`,
      { field },
    );
  }
  if (overlong === "drop" || promptLength >= maxLength - 1) return { dropped: `${message}; dropped` };
  return { kept: { tokens: Int32Array.from(full.slice(0, maxLength)), promptLength }, truncated: true };
}

export async function tokenizeExamples(
  source: AsyncIterable<SftExample> | Iterable<SftExample>,
  tokenizer: TrainTokenizer,
  maxLength: number,
  overlong: OverlongPolicy,
  options: { label?: string; allowEmpty?: boolean } = {},
): Promise<TokenizeResult> {
  const label = options.label ?? "example";
  const examples: TokenizedExample[] = [];
  const warnings: string[] = [];
  let dropped = 0;
  let truncated = 0;
  let index = 0;
  for await (const example of source as AsyncIterable<SftExample>) {
    const i = index++;
    if (typeof example?.prompt !== "string" || typeof example?.completion !== "string") {
      throw new ConfigError(`${label} ${i} must have string fields "prompt" and "completion"`, {
        field: `examples[${i}]`,
      });
    }
    const outcome = tokenizeCompletion(
      tokenizer,
      example.prompt,
      example.completion,
      maxLength,
      overlong,
      `${label} ${i}`,
      `examples[${i}]`,
    );
    if ("dropped" in outcome) {
      dropped++;
      warnings.push(outcome.dropped);
      continue;
    }
    if (outcome.truncated) truncated++;
    examples.push({ index: i, ...outcome.kept });
  }
  if (!options.allowEmpty) checkUsable(index, examples.length, warnings);
  return { examples, dropped, truncated, warnings };
}

/** Throws the ConfigError for a dataset with no examples, or with none left after tokenisation. */
export function checkUsable(given: number, kept: number, warnings: readonly string[]): void {
  if (given === 0)
    throw new ConfigError("the training dataset is empty: no examples were given", { field: "examples" });
  if (kept === 0) {
    throw new ConfigError(`none of the ${given} examples is usable (${warnings[0] ?? "all were dropped"})`, {
      field: "examples",
    });
  }
}

/**
 * Item indices of each micro-batch of one epoch: sorted by length, packed up to batchTokens, order shuffled.
 * `rows[i]` is the number of batch rows item i takes (an SFT example: its tokens minus one).
 */
export function epochBatches(rows: readonly number[], batchTokens: number, seed: number, epoch: number): number[][] {
  const random = seededRandom((seed * 1_000_003 + epoch * 7919 + 17) >>> 0);
  const order = rows.map((_, i) => i);
  // Random tie-break first so equal lengths mix differently every epoch; then a stable sort by length.
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  order.sort((a, b) => rows[a]! - rows[b]!);
  const batches: number[][] = [];
  let current: number[] = [];
  let tokens = 0;
  for (const i of order) {
    const length = rows[i]!;
    if (current.length > 0 && tokens + length > batchTokens) {
      batches.push(current);
      current = [];
      tokens = 0;
    }
    current.push(i);
    tokens += length;
  }
  if (current.length > 0) batches.push(current);
  for (let i = batches.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [batches[i], batches[j]] = [batches[j]!, batches[i]!];
  }
  return batches;
}

/** Completion tokens (loss rows) of a micro-batch. */
export function completionTokens(examples: readonly TokenizedExample[], batch: readonly number[]): number {
  return batch.reduce((sum, i) => sum + examples[i]!.tokens.length - examples[i]!.promptLength, 0);
}

/** Pack a micro-batch; each loss row gets weight 1/normaliser (the completion tokens of the whole step). */
export function packBatch(
  examples: readonly TokenizedExample[],
  batch: readonly number[],
  normaliser: number,
): TrainBatch {
  const rows = batch.reduce((sum, i) => sum + examples[i]!.tokens.length - 1, 0);
  const tokens = new Int32Array(rows);
  const positions = new Int32Array(rows);
  const targets = new Int32Array(rows);
  const weights = new Float64Array(rows);
  const starts = new Int32Array(batch.length + 1);
  let at = 0;
  batch.forEach((i, s) => {
    const example = examples[i]!;
    starts[s] = at;
    const n = example.tokens.length - 1;
    for (let t = 0; t < n; t++) {
      tokens[at + t] = example.tokens[t]!;
      positions[at + t] = t;
      targets[at + t] = example.tokens[t + 1]!;
      // Row t predicts token t+1: in the loss when that token is part of the completion.
      weights[at + t] = t + 1 >= example.promptLength ? 1 / normaliser : 0;
    }
    at += n;
  });
  starts[batch.length] = at;
  return { tokens, positions, segments: { starts }, targets, weights };
}
