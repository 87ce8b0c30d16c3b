import {
  type LlamaContextSequence,
  type LlamaGrammar,
  LlamaGrammarEvaluationState,
  type LlamaModel,
  type Token,
  TokenBias,
} from "node-llama-cpp";
import { BackendError, ConfigError, ContextLengthError } from "../../errors/index.js";
import type { Completion, SamplingOptions } from "../language-model.js";
import { NgramPenaltyTracker } from "./ngram-penalty.js";
import { commonPrefixLength } from "./sequence-pool.js";
import { vocabularySizeOf } from "./token-ids.js";

/** `maxTokens` when a request gives none. */
export const defaultMaxTokens = 256;

export interface GenerateOptions extends SamplingOptions {
  /** Resolved seed of this sample. */
  seed: number;
  /** Compiled grammar, when `grammar` is set. */
  compiledGrammar?: LlamaGrammar;
  /** Extra strings that end generation (chat wrappers' stop triggers); cut like `stop`. */
  extraStops?: string[];
  signal?: AbortSignal;
  /** Called once the prompt is in the KV cache (first token sampled, or generation over). */
  onPromptEvaluated?: () => void;
  /** Called with the text so far that is certain to begin the final text (see `TextProgress.text`). */
  onText?: (text: string) => void;
}

/**
 * The part of `text` (the detokenized output so far) that is certain to begin the final text: without an
 * unfinished UTF-8 character at the end (U+FFFD), and without the last `longestStop - 1` characters, which could
 * begin a stop string that the next tokens complete.
 */
export function settledText(text: string, longestStop: number): string {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
  // Counted from the end of the finished characters: the unfinished one may complete a stop string.
  if (longestStop > 1) end -= longestStop - 1;
  return text.slice(0, Math.max(0, end));
}

/** Tokens of the settled part of a GrowingText given as context for the rest (node-llama-cpp uses the last few). */
const growingContextTokens = 16;
/** Unsettled tokens after which a GrowingText tries to settle them. */
const growingSettleAfter = 32;

/**
 * The detokenized text of a growing list of generated tokens, without detokenizing all of them at every token (which
 * made each step cost grow with the length of the output). The text of the tokens up to a settled point is kept;
 * only the tokens after it are detokenized, with the last settled tokens as context (what node-llama-cpp's
 * `lastTokens` is for: spaces and other heuristics at the join). A run of tokens is settled once its text has no
 * unfinished UTF-8 character (U+FFFD), so the join always falls on a character boundary.
 */
export class GrowingText {
  private settled = "";
  private settledCount = 0;

  constructor(
    private readonly model: LlamaModel,
    /** Tokens before the first generated one (the prompt's last few), as the full detokenization would use. */
    private readonly contextTail: readonly Token[],
  ) {}

  /** The text of `generated` (the same list each call, grown by any number of tokens). */
  textOf(generated: readonly Token[]): string {
    const context =
      this.settledCount > 0
        ? generated.slice(Math.max(0, this.settledCount - growingContextTokens), this.settledCount)
        : this.contextTail;
    const rest = this.model.detokenize(generated.slice(this.settledCount), false, context);
    const text = this.settled + rest;
    if (generated.length - this.settledCount >= growingSettleAfter && !rest.includes("\uFFFD")) {
      this.settled = text;
      this.settledCount = generated.length;
    }
    return text;
  }
}

export interface GenerateResult extends Completion {
  /** Prompt tokens that had to be evaluated (not found in the sequence's KV cache). */
  evaluatedPromptTokens: number;
  /** Ids of the generated tokens that make up `text`. */
  tokens: Token[];
}

/** Build a TokenBias from raw logit deltas. TokenBias.set() refuses end-of-generation tokens (it cannot ban EOS),
 * and converts numbers as probabilities; the map of raw logit deltas is what the sampler reads. */
function tokenBiasFromLogits(model: LlamaModel, biases: Map<number, number>): TokenBias {
  const bias = new TokenBias(model.tokenizer);
  const internal = bias as unknown as { _biases?: Map<number, number> };
  if (!(internal._biases instanceof Map))
    throw new BackendError(
      "node-llama-cpp's TokenBias has changed shape (expected an internal _biases map); logit bias cannot be applied. Use node-llama-cpp 3.22.x.",
    );
  internal._biases = biases;
  return bias;
}

/** End-of-generation tokens of the model (EOS, EOT), for banning when `allowEos` is false. */
function endTokens(model: LlamaModel): Token[] {
  return [model.tokens.eos, model.tokens.eot].filter((t): t is Token => t != null);
}

/** Tokens a sequence of `contextSize` tokens can still generate after a prompt of `promptLength` tokens. */
export function generationRoom(promptLength: number, contextSize: number): number {
  return contextSize - promptLength - 1;
}

/**
 * Throw unless generation can start from `promptTokens` in a sequence of `contextSize` tokens: at least one token
 * (a BOS token or text) and room for one generated token; with `refuseMaxTokens`, room for that many (otherwise
 * generation stops where the context ends). `where` prefixes the message (e.g. `request 3: `). Callers check
 * before taking a sequence, so a bad prompt fails before any work starts.
 */
export function checkPromptFits(
  promptTokens: readonly Token[],
  contextSize: number,
  where = "",
  refuseMaxTokens?: number,
): void {
  if (promptTokens.length === 0)
    throw new ConfigError(
      `${where}cannot generate from an empty prompt: expected at least one token (a BOS token or text)`,
      { field: "prompt" },
    );
  const room = generationRoom(promptTokens.length, contextSize);
  if (room < 1)
    throw new ContextLengthError(
      `${where}prompt has ${promptTokens.length} tokens but each sequence holds ${contextSize}: expected a prompt shorter than the context. Shorten the prompt or raise contextSize.`,
      { promptTokens: promptTokens.length, contextSize },
    );
  if (refuseMaxTokens !== undefined && refuseMaxTokens > room)
    throw new ContextLengthError(
      `${where}maxTokens is ${refuseMaxTokens} but after the prompt's ${promptTokens.length} tokens a sequence of ${contextSize} has room for ${room}: expected at most ${room}. Lower maxTokens, shorten the prompt or raise contextSize.`,
      { promptTokens: promptTokens.length, maxTokens: refuseMaxTokens, contextSize },
    );
}

/**
 * Generate one sample on `sequence` from `promptTokens` (checked with `checkPromptFits`), reusing whatever prefix of
 * the prompt the sequence already holds in its KV cache (only the new suffix is evaluated). Sampling follows Dromedary: logits + logit bias -
 * n-gram penalties (- OpenAI frequency/presence penalties), then top-k/top-p/temperature in llama.cpp's sampler.
 */
export async function generateOnSequence(
  sequence: LlamaContextSequence,
  promptTokens: readonly Token[],
  options: GenerateOptions,
): Promise<GenerateResult> {
  const model = sequence.model;
  const budget = Math.min(
    options.maxTokens ?? defaultMaxTokens,
    generationRoom(promptTokens.length, sequence.contextSize),
  );
  if (budget <= 0) return { text: "", finishReason: "length", tokenCount: 0, evaluatedPromptTokens: 0, tokens: [] };

  const cached = commonPrefixLength(sequence.contextTokens, promptTokens);
  // At least the last prompt token is evaluated again: its logits give the first sampled token.
  const keep = Math.min(cached, promptTokens.length - 1);
  if (keep < sequence.nextTokenIndex)
    await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);

  const staticBias = new Map<number, number>();
  const vocabularySize = vocabularySizeOf(model);
  for (const [key, bias] of Object.entries(options.logitBias ?? {})) {
    const token = Number(key);
    if (!Number.isInteger(token) || token < 0 || (vocabularySize !== undefined && token >= vocabularySize))
      throw new ConfigError(
        `logitBias names token ${key}, outside this model's vocabulary (expected an integer id from 0 to ${vocabularySize === undefined ? "the vocabulary size" : vocabularySize - 1}). Use backend.tokenize() to find token ids.`,
        { field: "logitBias" },
      );
    if (typeof bias !== "number" || Number.isNaN(bias))
      throw new ConfigError(`logitBias for token ${key} must be a number, got ${String(bias)}`, { field: "logitBias" });
    staticBias.set(token, bias);
  }
  if (options.allowEos === false && !options.compiledGrammar)
    for (const token of endTokens(model)) staticBias.set(token, Number.NEGATIVE_INFINITY);
  const ngrams = new NgramPenaltyTracker(options.ngramPenalties ?? []);
  const frequencyPenalty = options.frequencyPenalty ?? 0;
  const presencePenalty = options.presencePenalty ?? 0;
  const tokenCounts = new Map<number, number>();
  const dynamic = ngrams.active || frequencyPenalty !== 0 || presencePenalty !== 0;
  const tokenBias = dynamic
    ? () => {
        const biases = ngrams.addPenalties(new Map(staticBias));
        for (const [token, count] of tokenCounts)
          biases.set(token, (biases.get(token) ?? 0) - frequencyPenalty * count - presencePenalty);
        return tokenBiasFromLogits(model, biases);
      }
    : staticBias.size > 0
      ? tokenBiasFromLogits(model, staticBias)
      : undefined;

  const grammarEvaluationState = options.compiledGrammar
    ? new LlamaGrammarEvaluationState({ model, grammar: options.compiledGrammar })
    : undefined;
  const stops = [...(options.stop ?? []), ...(options.extraStops ?? [])].filter((s) => s.length > 0);
  const longestStop = Math.max(0, ...stops.map((s) => s.length));
  const contextTail = promptTokens.slice(-16);
  const growing = new GrowingText(model, contextTail);

  const generated: Token[] = [];
  let finishReason: Completion["finishReason"] = "stop";
  let text: string | undefined;
  // With a stop string, the generated tokens that make up `text` (the stop string's own tokens left out).
  let spelling: Token[] | undefined;
  let checkedLength = 0;
  let sent = "";
  const meterBefore = sequence.tokenMeter.getState();
  const tokensEvaluatedSoFar = () => {
    const after = sequence.tokenMeter.getState();
    return (
      after.usedInputTokens - meterBefore.usedInputTokens + (after.usedOutputTokens - meterBefore.usedOutputTokens)
    );
  };
  let evaluatedPromptTokens = -1;
  const temperature = options.temperature ?? 1;

  for await (const token of sequence.evaluate(promptTokens.slice(keep), {
    temperature,
    topP: options.topP ?? 1,
    topK: options.topK ?? 0,
    minP: 0,
    seed: options.seed,
    tokenBias,
    grammarEvaluationState,
  })) {
    if (evaluatedPromptTokens < 0) {
      evaluatedPromptTokens = tokensEvaluatedSoFar();
      options.onPromptEvaluated?.();
    }
    generated.push(token);
    ngrams.push(token);
    tokenCounts.set(token, (tokenCounts.get(token) ?? 0) + 1);
    if (stops.length > 0 || options.onText) {
      const current = growing.textOf(generated);
      let cut = -1;
      for (const stop of stops) {
        const at = current.indexOf(stop, Math.max(0, checkedLength - longestStop));
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      checkedLength = current.length;
      if (cut >= 0) {
        text = current.slice(0, cut);
        spelling = tokensSpelling(model, generated, cut, contextTail);
        finishReason = "stop";
        break;
      }
      if (options.onText) {
        const settled = settledText(current, longestStop);
        // Only ever extend what was sent (a tokenizer could rewrite the end of its text as tokens arrive).
        if (settled.length > sent.length && settled.startsWith(sent)) {
          sent = settled;
          options.onText(settled);
        }
      }
    }
    if (generated.length >= budget) {
      finishReason = "length";
      break;
    }
    if (options.signal?.aborted) {
      finishReason = "abort";
      break;
    }
  }
  return {
    text: text ?? model.detokenize(generated, false, contextTail),
    finishReason,
    tokenCount: generated.length,
    // Still unset when the first sampled token ended generation: everything decoded was the prompt.
    evaluatedPromptTokens: evaluatedPromptTokens < 0 ? tokensEvaluatedSoFar() : evaluatedPromptTokens,
    tokens: spelling ?? generated,
  };
}

/** The shortest prefix of `tokens` whose text reaches `length` characters (it covers text cut at a stop string). */
function tokensSpelling(model: LlamaModel, tokens: Token[], length: number, before: readonly Token[]): Token[] {
  for (let count = 0; count < tokens.length; count++)
    if (model.detokenize(tokens.slice(0, count), false, before as Token[]).length >= length)
      return tokens.slice(0, count);
  return tokens;
}
