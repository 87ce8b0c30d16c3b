/**
 * Log-probabilities of a continuation from a completions response that echoed `prompt + continuation`.
 *
 * Token alignment: the server tokenises the whole text once, as the model sees it. The continuation's tokens are
 * those that start at or after the prompt's end (`text_offset >= prompt length`), plus a token that straddles the
 * boundary (starts inside the prompt, ends inside the continuation): its log-probability is counted, because the
 * continuation's first characters are only generated through it. This equals lm-evaluation-harness's
 * "tokens of (prompt + continuation) minus tokens of prompt" whenever the prompt's tokenisation is a prefix of the
 * whole text's (always for byte vocabularies, and for SentencePiece/BPE when the prompt ends on whitespace or the
 * continuation starts with a space). Offsets are counted in Unicode code points, as Python servers (vLLM) count them.
 */
import { CapabilityError } from "../../errors/index.js";
import type { ScoreResult, TokenLogprob } from "../language-model.js";
import type { CompletionChoice } from "./response-shapes.js";

/** Length in code points (what `text_offset` counts on Python servers and on `selfalign serve`). */
export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

function sliceCodePoints(points: string[], start: number, end: number): string {
  return points.slice(start, end).join("");
}

/** `token_id:123` (vLLM `return_tokens_as_token_ids`, `selfalign serve`) -> 123; otherwise -1 (unknown id). */
export function tokenIdOf(token: string): number {
  const match = /^token_id:(\d+)$/.exec(token);
  return match ? Number(match[1]) : -1;
}

interface AlignedToken {
  id: number;
  start: number;
  end: number;
  logprob: number | null;
  greedy: boolean;
  /** The server's most likely tokens at this position, best first. */
  top: NonNullable<TokenLogprob["top"]>;
}

/** Best-first alternatives from an OpenAI `top_logprobs` entry (token text or `token_id:N` -> log-probability). */
function topFromDict(entry: Record<string, number> | null | undefined): AlignedToken["top"] {
  return Object.entries(entry ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([text, logprob]) => ({ token: tokenIdOf(text), text, logprob }));
}

const cannotScore = (serverUrl: string, what: string) =>
  new CapabilityError(
    `${serverUrl} cannot score text: ${what}. Scoring needs a completions endpoint that returns log-probabilities of ` +
      "echoed prompt tokens (vLLM, `selfalign serve`; llama.cpp's server gives none). Use the embedded backend " +
      "(`llama-cpp:<model.gguf>`), or serve the model with vLLM or `selfalign serve`, to run score-based evaluations.",
  );

function alignFromLogprobs(choice: CompletionChoice, points: string[]): AlignedToken[] | undefined {
  const logprobs = choice.logprobs;
  if (!logprobs || logprobs.tokens.length === 0) return undefined;
  const offsets =
    logprobs.textOffset ??
    (() => {
      // No text_offset: accumulate token strings (only valid when tokens are text, not ids).
      let at = 0;
      return logprobs.tokens.map((token) => {
        const start = at;
        at += codePointLength(token);
        return start;
      });
    })();
  return logprobs.tokens.map((token, i) => {
    const start = offsets[i]!;
    const end = i + 1 < offsets.length ? Math.max(start, offsets[i + 1]!) : points.length;
    const logprob = logprobs.tokenLogprobs[i] ?? null;
    const top = logprobs.topLogprobs?.[i];
    const best = top ? Math.max(...Object.values(top)) : undefined;
    return {
      id: tokenIdOf(token),
      start,
      end,
      logprob,
      greedy: logprob !== null && best !== undefined && logprob >= best - 1e-6,
      top: topFromDict(top),
    };
  });
}

/** Best-first alternatives from a vLLM `prompt_logprobs` entry (token id -> {logprob, rank, decoded_token}). */
function topFromPromptEntry(
  entry: NonNullable<CompletionChoice["promptLogprobs"]>[number] | undefined,
): AlignedToken["top"] {
  return Object.entries(entry ?? {})
    .sort((a, b) => (a[1].rank ?? Number.POSITIVE_INFINITY) - (b[1].rank ?? Number.POSITIVE_INFINITY))
    .map(([id, value]) => ({ token: Number(id), text: value.decoded_token ?? "", logprob: value.logprob }));
}

/**
 * vLLM `prompt_logprobs` requested with `prompt_logprobs: 1`: per prompt token, the token itself and, when it is not
 * the most likely, the rank-1 token (with k > 1 the token itself cannot be told apart when it is among the top k, so
 * alternatives come from a second answer, `alternatives`, requested with k).
 */
function alignFromPromptLogprobs(
  choice: CompletionChoice,
  points: string[],
  alternatives?: CompletionChoice["promptLogprobs"],
): AlignedToken[] | undefined {
  const entries = choice.promptLogprobs;
  if (!entries || entries.length === 0) return undefined;
  const picked = entries.map((entry, position) => {
    if (!entry) return null;
    const items = Object.entries(entry);
    const actual = items.length === 1 ? items[0]! : (items.find(([, value]) => value.rank !== 1) ?? items[0]!);
    const top = topFromPromptEntry(alternatives ? alternatives[position] : entry);
    return { id: Number(actual[0]), ...actual[1], greedy: items.length === 1 || actual[1].rank === 1, top };
  });
  const restLength = picked.reduce((sum, item) => sum + (item ? codePointLength(item.decoded_token ?? "") : 0), 0);
  // The first entry is null; its text length is whatever the others leave over (0 for a BOS token).
  let at = 0;
  return picked.map((item, i) => {
    const length = item ? codePointLength(item.decoded_token ?? "") : i === 0 ? points.length - restLength : 0;
    const token: AlignedToken = {
      id: item?.id ?? -1,
      start: at,
      end: at + length,
      logprob: item?.logprob ?? null,
      greedy: item?.greedy ?? false,
      top: item?.top ?? [],
    };
    at += length;
    return token;
  });
}

/**
 * Score `continuation` from an echoed completion of `prompt + continuation` (the echo may be followed by generated
 * text when the server insisted on `max_tokens >= 1`).
 */
export function scoreFromEcho(
  choice: CompletionChoice,
  prompt: string,
  continuation: string,
  serverUrl: string,
  /** Keep up to this many alternatives per token (`TokenLogprob.top`); 0 keeps none. */
  topLogprobs = 0,
  /** vLLM: `prompt_logprobs` of the same text requested with k = `topLogprobs` (see alignFromPromptLogprobs). */
  alternatives?: CompletionChoice["promptLogprobs"],
): ScoreResult {
  if (prompt.length === 0 && continuation.length > 0) {
    // The first token of an echoed text comes without a log-probability (and a leading BOS or SentencePiece
    // dummy-prefix token cannot be told apart from text), so an empty prompt cannot be scored exactly here.
    throw cannotScore(
      serverUrl,
      "OpenAI-style servers return no log-probability for the first token of a text, so an empty prompt cannot " +
        "be scored exactly; give a non-empty prompt (e.g. a newline)",
    );
  }
  const full = prompt + continuation;
  const points = Array.from(choice.text.startsWith(full) ? choice.text : full);
  const promptLength = codePointLength(prompt);
  const fullLength = codePointLength(full);
  const aligned = alignFromLogprobs(choice, points) ?? alignFromPromptLogprobs(choice, points, alternatives);
  if (!aligned)
    throw cannotScore(
      serverUrl,
      "its answer to an `echo: true, logprobs: 1` request carries no token log-probabilities",
    );
  const selected = aligned.filter(
    (token) => token.start < fullLength && (token.start >= promptLength || token.end > promptLength),
  );
  const tokens: TokenLogprob[] = [];
  let isGreedy = true;
  for (const token of selected) {
    if (token.logprob === null) {
      throw cannotScore(
        serverUrl,
        `it returned no log-probability for the token at character ${token.start} (servers give none for the ` +
          "first token of a text); score with a non-empty prompt",
      );
    }
    const scored: TokenLogprob = {
      token: token.id,
      text: sliceCodePoints(points, token.start, token.end),
      logprob: token.logprob,
    };
    if (topLogprobs > 0) scored.top = token.top.slice(0, topLogprobs);
    tokens.push(scored);
    isGreedy &&= token.greedy;
  }
  const logprob = tokens.reduce((sum, token) => sum + token.logprob, 0);
  return { logprob, tokens, isGreedy: tokens.length > 0 && isGreedy };
}
