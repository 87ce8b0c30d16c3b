/**
 * Log-probabilities of a continuation from a completions response that echoed `prompt + continuation`.
 *
 * Alignment is by token count, as lm-evaluation-harness does it, never by character offsets: servers disagree on
 * what `text_offset` means. vLLM sums the lengths of each token's own string, so a BOS token decoded as `<s>`
 * shifts every later offset, SentencePiece pieces decoded one by one lose their leading space, and with
 * `return_tokens_as_token_ids` every token counts `len("token_id:N")`; SGLang sends -1 for every token.
 *
 * The rule: `whole` = the server's tokens of prompt + continuation (its `/tokenize`, or a local tokenizer),
 * `context` = its tokens of the prompt alone. The continuation is `whole` after the longest common prefix of the
 * two (equal to "whole minus the prompt's tokens" whenever the prompt's encoding is a prefix of the whole one; a
 * token merging across the boundary counts as continuation, as in the embedded backend). Special tokens that the
 * completions endpoint adds and `/tokenize` does not (a BOS) are found by comparing the echoed token count with
 * `whole.length`. Where no tokenizer is reachable, the prompt alone is echoed and its tokens are the context.
 * Offsets only name each scored token's text, and only when they agree with the echoed text.
 */
import { BackendError, CapabilityError } from "../../errors/index.js";
import type { ScoreResult, TokenLogprob } from "../language-model.js";
import type { CompletionChoice, Usage } from "./response-shapes.js";

/** Length in code points (what `text_offset` counts on Python servers and on `selfalign serve`). */
export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** `token_id:123` (vLLM `return_tokens_as_token_ids`, `selfalign serve`) -> 123; otherwise -1 (unknown id). */
export function tokenIdOf(token: string): number {
  const match = /^token_id:(\d+)$/.exec(token);
  return match ? Number(match[1]) : -1;
}

/** One position of an echoed text, as the server reported it. */
export interface EchoedToken {
  /** Token id; -1 when the server gave only its text. */
  id: number;
  /** The server's string for the token (its text, a vocabulary piece, or `token_id:N`). */
  name: string;
  /** The token's text in the echoed text when the server's offsets say so; otherwise its name (or "" for an id). */
  text: string;
  logprob: number | null;
  greedy: boolean;
  /** The server's most likely tokens at this position, best first. */
  top: NonNullable<TokenLogprob["top"]>;
}

/** Every position a server returned for one echoed text, and how many of them are the prompt that was sent. */
export interface EchoedText {
  tokens: EchoedToken[];
  /** Tokens of the text sent, as the server encoded it (with any BOS it added); the rest were generated. */
  promptCount: number;
}

const cannotScore = (serverUrl: string, what: string) =>
  new CapabilityError(
    `${serverUrl} cannot score text: ${what}. Scoring needs a completions endpoint that returns log-probabilities of ` +
      "echoed prompt tokens (vLLM, `selfalign serve`; llama.cpp's server gives none). Use the embedded backend " +
      "(`llama-cpp:<model.gguf>`), or serve the model with vLLM or `selfalign serve`, to run score-based evaluations.",
  );

/** Best-first alternatives from an OpenAI `top_logprobs` entry (token text or `token_id:N` -> log-probability). */
function topFromDict(entry: Record<string, number> | null | undefined): EchoedToken["top"] {
  return Object.entries(entry ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([text, logprob]) => ({ token: tokenIdOf(text), text, logprob }));
}

/**
 * Each token's text from the server's offsets, when they describe the echoed text: tokens that spell it exactly,
 * or offsets that are non-negative, non-decreasing, start at 0 and stay inside it — and are not merely the running
 * sum of the names' lengths (vLLM's offsets, which a decoded BOS, a lost space or an id placeholder make wrong).
 */
function tokenTexts(names: readonly string[], offsets: readonly number[] | null, text: string): string[] | undefined {
  const points = Array.from(text);
  if (names.join("") === text) return [...names];
  if (!offsets || offsets.length !== names.length || offsets.length === 0) return undefined;
  let runningSum = true;
  let at = 0;
  for (let i = 0; i < names.length; i++) {
    if (offsets[i] !== at) runningSum = false;
    at += codePointLength(names[i]!);
  }
  if (runningSum) return undefined;
  const valid = offsets.every(
    (offset, i) =>
      Number.isInteger(offset) &&
      offset >= 0 &&
      offset <= points.length &&
      (i === 0 ? offset === 0 : offset >= offsets[i - 1]!),
  );
  if (!valid) return undefined;
  return offsets.map((start, i) =>
    points.slice(start, i + 1 < offsets.length ? offsets[i + 1] : points.length).join(""),
  );
}

/**
 * The echoed positions of a `logprobs` answer (`echo: true, logprobs: k`). The prompt's token count is the
 * server's: `prompt_token_ids` (vLLM and SGLang with `return_token_ids`), else `usage.prompt_tokens`, else all
 * positions but the generated ones.
 */
export function echoedFromLogprobs(
  choice: CompletionChoice,
  usage: Usage | null,
  generated: number,
): EchoedText | undefined {
  const logprobs = choice.logprobs;
  if (!logprobs || logprobs.tokens.length === 0) return undefined;
  const names = logprobs.tokens;
  const texts = tokenTexts(names, logprobs.textOffset, choice.text);
  const idsFromServer = choice.promptTokenIds;
  const tokens = names.map((name, i): EchoedToken => {
    const logprob = logprobs.tokenLogprobs[i] ?? null;
    const top = logprobs.topLogprobs?.[i];
    const best = top ? Math.max(...Object.values(top)) : undefined;
    const id = tokenIdOf(name) >= 0 ? tokenIdOf(name) : (idsFromServer?.[i] ?? -1);
    return {
      id,
      name,
      text: texts?.[i] ?? (tokenIdOf(name) >= 0 ? "" : name),
      logprob,
      greedy: logprob !== null && best !== undefined && logprob >= best - 1e-6,
      top: topFromDict(top),
    };
  });
  const fromUsage = usage && usage.promptTokens > 0 ? usage.promptTokens : undefined;
  const promptCount = idsFromServer?.length ?? fromUsage ?? names.length - (usage ? usage.completionTokens : generated);
  return { tokens, promptCount: Math.max(0, Math.min(names.length, promptCount)) };
}

/**
 * The echoed positions of a vLLM `prompt_logprobs` answer requested with `prompt_logprobs: 1`: per prompt token,
 * the token itself and, when it is not the most likely, the rank-1 token (with k > 1 the token itself cannot be
 * told apart when it is among the top k, so alternatives come from a second answer, `alternatives`, asked with k).
 */
export function echoedFromPromptLogprobs(
  choice: CompletionChoice,
  alternatives?: CompletionChoice["promptLogprobs"],
): EchoedText | undefined {
  const entries = choice.promptLogprobs;
  if (!entries || entries.length === 0) return undefined;
  const ids = choice.promptTokenIds;
  const tokens = entries.map((entry, position): EchoedToken => {
    if (!entry) {
      const id = ids?.[position] ?? -1;
      return { id, name: "", text: "", logprob: null, greedy: false, top: [] };
    }
    const items = Object.entries(entry);
    const actual = items.length === 1 ? items[0]! : (items.find(([, value]) => value.rank !== 1) ?? items[0]!);
    const alternativeEntry = alternatives ? alternatives[position] : entry;
    const top = Object.entries(alternativeEntry ?? {})
      .sort((a, b) => (a[1].rank ?? Number.POSITIVE_INFINITY) - (b[1].rank ?? Number.POSITIVE_INFINITY))
      .map(([id, value]) => ({ token: Number(id), text: value.decoded_token ?? "", logprob: value.logprob }));
    const text = actual[1].decoded_token ?? "";
    return {
      id: Number(actual[0]),
      name: text,
      text,
      logprob: actual[1].logprob,
      greedy: items.length === 1 || actual[1].rank === 1,
      top,
    };
  });
  return { tokens, promptCount: tokens.length };
}

export function commonPrefixLength<T>(a: readonly T[], b: readonly T[]): number {
  const limit = Math.min(a.length, b.length);
  let i = 0;
  while (i < limit && a[i] === b[i]) i++;
  return i;
}

/** How the prompt's tokens are known: the server's (or a local) tokenizer, or an echo of the prompt alone. */
export type PromptReference =
  | { kind: "tokenizer"; context: readonly number[]; whole: readonly number[] }
  | { kind: "echo"; prompt: EchoedText };

/** Keys that identify an echoed token: its id when the server gave ids, else its string. */
function keysOf(echoed: EchoedText): Array<number | string> {
  return echoed.tokens.slice(0, echoed.promptCount).map((token) => (token.id >= 0 ? token.id : `name:${token.name}`));
}

/** Index of the first continuation token among `whole`'s echoed positions. */
export function continuationStart(whole: EchoedText, reference: PromptReference, serverUrl: string): number {
  if (reference.kind === "echo") return commonPrefixLength(keysOf(reference.prompt), keysOf(whole));
  // Tokens the completions endpoint adds in front (a BOS) that /tokenize did not, or the reverse.
  const shift = whole.promptCount - reference.whole.length;
  const echoedIds = whole.tokens.slice(Math.max(0, shift), whole.promptCount).map((token) => token.id);
  const expected = reference.whole.slice(Math.max(0, -shift));
  const mismatch = echoedIds.findIndex((id, i) => id >= 0 && id !== expected[i]);
  if (Math.abs(shift) > 2 || mismatch >= 0) {
    throw new BackendError(
      `${serverUrl} tokenised the scored text differently in /v1/completions (${whole.promptCount} tokens) and in ` +
        `/tokenize (${reference.whole.length} tokens${mismatch >= 0 ? `, different at token ${mismatch}` : ""}): ` +
        "expected the same tokenizer behind both. Check that `model` names the served model, and that a " +
        "`tokenizer` given to the backend has the server's vocabulary.",
    );
  }
  return shift + commonPrefixLength(reference.context, reference.whole);
}

/**
 * Score `continuation` from the echoed positions of `prompt + continuation` and the index where the continuation
 * starts among them (the echo may be followed by generated text when the server insisted on `max_tokens >= 1`).
 */
export function scoreFromEcho(
  whole: EchoedText,
  start: number,
  serverUrl: string,
  /** Keep up to this many alternatives per token (`TokenLogprob.top`); 0 keeps none. */
  topLogprobs = 0,
): ScoreResult {
  if (start < 0 || start > whole.promptCount) {
    throw new BackendError(
      `${serverUrl}: the continuation would start at token ${start} of ${whole.promptCount}; expected a position ` +
        "inside the echoed text (the server's token counts are inconsistent)",
    );
  }
  const tokens: TokenLogprob[] = [];
  let isGreedy = true;
  for (const token of whole.tokens.slice(start, whole.promptCount)) {
    if (token.logprob === null) {
      throw cannotScore(
        serverUrl,
        "it returned no log-probability for the first scored token (servers give none for the first token of a " +
          "text); score with a non-empty prompt",
      );
    }
    const scored: TokenLogprob = { token: token.id, text: token.text, logprob: token.logprob };
    if (topLogprobs > 0) scored.top = token.top.slice(0, topLogprobs);
    tokens.push(scored);
    isGreedy &&= token.greedy;
  }
  const logprob = tokens.reduce((sum, token) => sum + token.logprob, 0);
  return { logprob, tokens, isGreedy: tokens.length > 0 && isGreedy };
}

/** The error for an echo answer without log-probabilities. */
export function noLogprobsError(serverUrl: string): CapabilityError {
  return cannotScore(
    serverUrl,
    "its answer to an `echo: true, logprobs: 1` request carries no token log-probabilities",
  );
}

/** The error for an empty prompt (the first token of a text has no log-probability over HTTP). */
export function emptyPromptError(serverUrl: string): CapabilityError {
  return cannotScore(
    serverUrl,
    "OpenAI-style servers return no log-probability for the first token of a text, so an empty prompt cannot " +
      "be scored exactly; give a non-empty prompt (e.g. a newline)",
  );
}
