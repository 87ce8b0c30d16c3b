import { describe, expect, it } from "vitest";
import {
  completionTokens,
  epochBatches,
  exampleRows,
  packBatch,
  type TrainTokenizer,
  tokenizeExamples,
} from "../src/training/embedded/sft-dataset.js";

/** One token per character, except "ab" which merges into one token (a boundary-straddling merge). */
const tokenizer: TrainTokenizer = {
  bos: 1,
  tokenize: (text) => {
    const out: number[] = [];
    for (let i = 0; i < text.length; i++) {
      if (text[i] === "a" && text[i + 1] === "b") {
        out.push(1000);
        i++;
      } else out.push(text.charCodeAt(i));
    }
    return out;
  },
};

describe("SFT tokenisation and batching", () => {
  it("masks BOS + prompt and trains from where the full text departs from the prompt", async () => {
    const { examples } = await tokenizeExamples(
      [
        { prompt: "xy", completion: "z" },
        { prompt: "xa", completion: "bc" },
      ],
      tokenizer,
      64,
      "error",
    );
    expect(Array.from(examples[0]!.tokens)).toEqual([1, 120, 121, 122]);
    expect(examples[0]!.promptLength).toBe(3);
    // "xa" + "bc" -> x, ab, c: the merged token holds completion text, so the loss starts there.
    expect(Array.from(examples[1]!.tokens)).toEqual([1, 120, 1000, 99]);
    expect(examples[1]!.promptLength).toBe(2);
    const batch = packBatch(examples, [0, 1], completionTokens(examples, [0, 1]));
    expect(Array.from(batch.segments.starts)).toEqual([0, 3, 6]);
    expect(Array.from(batch.positions)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(Array.from(batch.targets)).toEqual([120, 121, 122, 120, 1000, 99]);
    expect(Array.from(batch.weights)).toEqual([0, 0, 1 / 3, 0, 1 / 3, 1 / 3]);
  });

  it("length-bucketed batches cover every example once per epoch, within the token budget, seeded", async () => {
    const data = Array.from({ length: 40 }, (_, i) => ({
      prompt: "p".repeat(1 + (i % 7)),
      completion: "c".repeat(1 + (i % 5)),
    }));
    const { examples } = await tokenizeExamples(data, tokenizer, 64, "error");
    for (const epoch of [0, 1]) {
      const batches = epochBatches(examples.map(exampleRows), 24, 3, epoch);
      expect(batches.flat().sort((a, b) => a - b)).toEqual(examples.map((_, i) => i));
      for (const batch of batches) {
        const tokens = batch.reduce((s, i) => s + examples[i]!.tokens.length - 1, 0);
        expect(batch.length === 1 || tokens <= 24).toBe(true);
      }
      expect(epochBatches(examples.map(exampleRows), 24, 3, epoch)).toEqual(batches);
    }
    expect(epochBatches(examples.map(exampleRows), 24, 3, 0)).not.toEqual(
      epochBatches(examples.map(exampleRows), 24, 3, 1),
    );
    expect(epochBatches(examples.map(exampleRows), 24, 3, 0).length).toBe(
      epochBatches(examples.map(exampleRows), 24, 3, 1).length,
    );
  });
});
