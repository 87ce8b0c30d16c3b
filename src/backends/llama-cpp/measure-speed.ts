/**
 * A few seconds' measurement of a model's speed (the embedded engine on this machine, or a server): prompt evaluation (tokens/s), decoding
 * (aggregate tokens/s with the backend's parallel sequences) and scoring (continuation tokens/s). What a run
 * estimate multiplies the tokens of each stage by. Prompts are filler words of the model's own vocabulary, each one
 * starting differently so nothing is served from the KV cache.
 */
import { completeAll, type LanguageModel } from "../language-model.js";

export interface MeasureEngineSpeedOptions {
  /** Tokens of the prompt evaluated to time prompt evaluation. Default 256. */
  promptTokens?: number;
  /** Tokens generated per sequence to time decoding. Default 32. */
  decodeTokens?: number;
  /** Sequences decoding at once (as the stages run them). Default: the backend's parallel sequences. */
  sequences?: number;
  /** Also time `score` on 4 continuations of a short prompt. Default true. */
  score?: boolean;
  signal?: AbortSignal;
}

export interface EngineSpeed {
  /** Prompt tokens evaluated per second (one long prompt, batch threads). */
  promptTokensPerSecond: number;
  /** Generated tokens per second, all sequences together. */
  decodeTokensPerSecond: number;
  /** Sequences that decoded at once for `decodeTokensPerSecond`. */
  decodeSequences: number;
  /** Scored continuation tokens per second (prompt evaluation included), when measured. */
  scoreTokensPerSecond?: number;
  /** Wall-clock seconds the measurement took. */
  seconds: number;
}

const filler = "the of and to in is was for on that with as by at from it be are this an which or has had ".split(" ");

/**
 * Text of about `tokens` tokens of this model (within a few of it), starting with `opening` and continuing with filler
 * words. It grows by the tokens per word measured so far, so it tokenises a few times, not once per word, and never
 * overshoots by more than a word: a byte vocabulary spends 3-10 tokens on a word, a real one about 1.3.
 */
export async function textOfTokens(
  backend: Pick<LanguageModel, "countTokens">,
  opening: string,
  tokens: number,
  words: readonly string[] = filler,
): Promise<string> {
  let text = opening;
  let count = await backend.countTokens(text);
  let i = 0;
  let perWord = 1;
  while (count < tokens) {
    // Add a quarter of what is missing at the measured rate (at least one word), then measure again.
    const adding = Math.max(1, Math.floor((tokens - count) / perWord / 4));
    let added = "";
    for (let k = 0; k < adding; k++) added += ` ${words[i++ % words.length]}`;
    const next = await backend.countTokens(text + added);
    if (next > tokens && adding > 1) {
      perWord = Math.max(perWord, (next - count) / adding);
      continue;
    }
    perWord = Math.max(0.5, (next - count) / adding);
    text += added;
    count = next;
  }
  return text;
}

/** Measure prompt-evaluation, decode and scoring speed of `backend` (a few seconds on a small model). */
export async function measureEngineSpeed(
  backend: LanguageModel,
  options: MeasureEngineSpeedOptions = {},
): Promise<EngineSpeed> {
  const started = performance.now();
  const signal = options.signal;
  const promptTokens = options.promptTokens ?? 256;
  const decodeTokens = options.decodeTokens ?? 32;
  const sequences = options.sequences ?? backend.capabilities().parallel;
  const nonce = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  // Warm-up: first calls pay for thread start-up and the automatic thread choice's first samples.
  await completeAll(backend, [{ prompt: `${nonce} warm up`, maxTokens: 4, temperature: 0, allowEos: false }], {
    signal,
  });

  // Prompt evaluation: one long prompt and a single generated token.
  const prompt = await textOfTokens(backend, `${nonce} prompt`, promptTokens);
  let start = performance.now();
  const [evaluated] = await completeAll(backend, [{ prompt, maxTokens: 1, temperature: 0, allowEos: false }], {
    signal,
  });
  const promptSeconds = (performance.now() - start) / 1000;
  const promptCount = evaluated?.usage.evaluatedPromptTokens ?? evaluated?.usage.promptTokens ?? promptTokens;

  // Decoding: short distinct prompts on every sequence, so almost all the time is generation.
  const requests = Array.from({ length: sequences }, (_, i) => ({
    prompt: `${nonce} ${i}:`,
    maxTokens: decodeTokens,
    temperature: 0,
    allowEos: false,
  }));
  start = performance.now();
  const decoded = await completeAll(backend, requests, { signal });
  const decodeSeconds = (performance.now() - start) / 1000;
  const generated = decoded.reduce((sum, result) => sum + result.usage.completionTokens, 0);

  let scoreTokensPerSecond: number | undefined;
  if ((options.score ?? true) && backend.capabilities().score) {
    const scorePrompt = await textOfTokens(backend, `${nonce} score`, 64);
    const continuations = [" yes", " no", " the first one", " neither of them"];
    start = performance.now();
    const scored = await backend.score(scorePrompt, continuations, { signal });
    const scoreSeconds = (performance.now() - start) / 1000;
    scoreTokensPerSecond = scored.reduce((sum, result) => sum + result.tokens.length, 0) / scoreSeconds;
  }
  return {
    promptTokensPerSecond: promptCount / promptSeconds,
    decodeTokensPerSecond: generated / decodeSeconds,
    decodeSequences: sequences,
    ...(scoreTokensPerSecond !== undefined ? { scoreTokensPerSecond } : {}),
    seconds: (performance.now() - started) / 1000,
  };
}
