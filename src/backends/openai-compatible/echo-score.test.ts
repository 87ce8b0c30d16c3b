import { describe, expect, it } from "vitest";
import { continuationStart, type EchoedText, echoedFromLogprobs, scoreFromEcho } from "./echo-score.js";
import type { CompletionChoice } from "./response-shapes.js";

const choice = (
  tokens: string[],
  textOffset: number[] | null,
  text: string,
  promptTokenIds: number[] | null = null,
): CompletionChoice => ({
  index: 0,
  text,
  finishReason: "length",
  logprobs: {
    tokens,
    tokenLogprobs: tokens.map((_, i) => (i === 0 ? null : -i)),
    topLogprobs: null,
    textOffset,
  },
  promptLogprobs: null,
  promptTokenIds,
});

describe("echoedFromLogprobs", () => {
  it("names each token by its text when the tokens spell the echo", () => {
    const echoed = echoedFromLogprobs(choice(["", "Hi", " you"], [0, 0, 2], "Hi you"), null, 0)!;
    expect(echoed.tokens.map((token) => token.text)).toEqual(["", "Hi", " you"]);
    expect(echoed.promptCount).toBe(3);
  });

  it("ignores offsets that are only the running sum of the names (vLLM with a decoded BOS)", () => {
    // "<s>" shifts every offset by 3; slicing the text by them would name " you" as "u".
    const echoed = echoedFromLogprobs(choice(["<s>", "Hi", "you"], [0, 3, 5], "Hi you"), null, 0)!;
    expect(echoed.tokens.map((token) => token.text)).toEqual(["<s>", "Hi", "you"]);
  });

  it("slices the text by offsets that describe it (ids as names, as selfalign serve sends them)", () => {
    const echoed = echoedFromLogprobs(choice(["token_id:5", "token_id:9"], [0, 2], "Hi you"), null, 0)!;
    expect(echoed.tokens.map((token) => [token.id, token.text])).toEqual([
      [5, "Hi"],
      [9, " you"],
    ]);
  });

  it("counts the prompt from prompt_token_ids, else usage, else all but the generated tokens", () => {
    const c = choice(["<s>", "a", "b", "c"], null, "abc", [1, 7, 8]);
    expect(echoedFromLogprobs(c, { promptTokens: 4, completionTokens: 0 }, 0)!.promptCount).toBe(3);
    expect(
      echoedFromLogprobs({ ...c, promptTokenIds: null }, { promptTokens: 3, completionTokens: 1 }, 1)!.promptCount,
    ).toBe(3);
    expect(echoedFromLogprobs({ ...c, promptTokenIds: null }, null, 1)!.promptCount).toBe(3);
  });
});

const echoedIds = (ids: number[], promptCount = ids.length): EchoedText => ({
  tokens: ids.map((id, i) => ({
    id,
    name: `token_id:${id}`,
    text: "",
    logprob: i === 0 ? null : -i,
    greedy: true,
    top: [],
  })),
  promptCount,
});

describe("continuationStart", () => {
  it("adds the BOS the completions endpoint echoes and /tokenize left out", () => {
    const whole = echoedIds([1, 10, 11, 12, 13]);
    expect(continuationStart(whole, { kind: "tokenizer", context: [10, 11], whole: [10, 11, 12, 13] }, "u")).toBe(3);
  });

  it("removes a BOS /tokenize added that the echo does not show", () => {
    const whole = echoedIds([10, 11, 12, 13]);
    expect(continuationStart(whole, { kind: "tokenizer", context: [1, 10, 11], whole: [1, 10, 11, 12, 13] }, "u")).toBe(
      2,
    );
  });

  it("scores a token merged across the boundary as continuation (the common-prefix rule)", () => {
    // prompt "Hello wor" = [5, 6, 7]; whole "Hello world" = [5, 6, 8] (" world" swallowed " wor").
    const whole = echoedIds([1, 5, 6, 8]);
    const start = continuationStart(whole, { kind: "tokenizer", context: [5, 6, 7], whole: [5, 6, 8] }, "u");
    expect(start).toBe(3);
    expect(scoreFromEcho(whole, start, "u").tokens.map((token) => token.token)).toEqual([8]);
  });

  it("stops at the server's prompt count: generated tokens after the echo are not scored", () => {
    const whole = echoedIds([1, 5, 6, 8, 99], 4);
    const start = continuationStart(whole, { kind: "tokenizer", context: [5, 6], whole: [5, 6, 8] }, "u");
    expect(scoreFromEcho(whole, start, "u").tokens.map((token) => token.token)).toEqual([8]);
  });

  it("compares the prompt's own echo when no tokenizer is reachable", () => {
    expect(continuationStart(echoedIds([1, 5, 6, 8]), { kind: "echo", prompt: echoedIds([1, 5, 6, 7]) }, "u")).toBe(3);
  });
});
