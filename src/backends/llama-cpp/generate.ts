import {
  type LlamaContextSequence,
  type LlamaGrammar,
  LlamaGrammarEvaluationState,
  type LlamaModel,
  type Token,
  TokenBias,
} from "node-llama-cpp";
import { BackendError, ConfigError } from "../../errors/index.js";
import type { Completion, SamplingOptions } from "../language-model.js";
import { NgramPenaltyTracker } from "./ngram-penalty.js";
import { commonPrefixLength } from "./sequence-pool.js";

const defaultMaxTokens = 256;

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

export interface GenerateResult extends Completion {
  /** Prompt tokens that had to be evaluated (not found in the sequence's KV cache). */
  evaluatedPromptTokens: number;
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

/** Number of tokens in the model's vocabulary, from its GGUF metadata (undefined when not recorded). */
function vocabularySizeOf(model: LlamaModel): number | undefined {
  const metadata = model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: unknown } } } | undefined;
  const tokens = metadata?.tokenizer?.ggml?.tokens;
  return Array.isArray(tokens) && tokens.length > 0 ? tokens.length : undefined;
}

const endTokenCache = new WeakMap<LlamaModel, Token[]>();

/**
 * Every token that ends generation in llama.cpp (its EOG set), for banning when `allowEos` is false. That is more
 * than EOS and EOT: llama.cpp also stops at tokens it recognises by their text (Qwen2's vocabulary has "<|im_end|>"
 * as EOT and a plain "</s>" besides its EOS "<|endoftext|>"; FIM pad/separator tokens), so banning EOS and EOT alone
 * would still let such a model stop. Found once per model by asking llama.cpp about each token.
 */
export function endTokens(model: LlamaModel): Token[] {
  let tokens = endTokenCache.get(model);
  if (!tokens) {
    tokens = [];
    for (const token of model.iterateAllTokens()) if (model.isEogToken(token)) tokens.push(token);
    for (const token of [model.tokens.eos, model.tokens.eot])
      if (token != null && !tokens.includes(token)) tokens.push(token);
    endTokenCache.set(model, tokens);
  }
  return tokens;
}

/**
 * Throw unless generation can start from `promptTokens` in a sequence of `contextSize` tokens: at least one token
 * (a BOS token or text) and room for one generated token. `where` prefixes the message (e.g. `request 3: `).
 * Callers check before taking a sequence, so a bad prompt fails before any work starts.
 */
export function checkPromptFits(promptTokens: readonly Token[], contextSize: number, where = ""): void {
  if (promptTokens.length === 0)
    throw new BackendError(
      `${where}cannot generate from an empty prompt: expected at least one token (a BOS token or text).`,
    );
  if (promptTokens.length >= contextSize - 1)
    throw new BackendError(
      `${where}prompt has ${promptTokens.length} tokens but each sequence holds ${contextSize}: expected a prompt shorter than the context. Shorten the prompt or raise contextSize.`,
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
  const budget = Math.min(options.maxTokens ?? defaultMaxTokens, sequence.contextSize - promptTokens.length - 1);
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

  const generated: Token[] = [];
  let finishReason: Completion["finishReason"] = "stop";
  let text: string | undefined;
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
      const current = model.detokenize(generated, false, contextTail);
      let cut = -1;
      for (const stop of stops) {
        const at = current.indexOf(stop, Math.max(0, checkedLength - longestStop));
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      checkedLength = current.length;
      if (cut >= 0) {
        text = current.slice(0, cut);
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
    tokens: generated,
  };
}
