/**
 * Every vocabulary file of llama.cpp's source (as node-llama-cpp ships it), on a random-weight model written here
 * with `--vocab`: the file's tokenizer is copied whole, node-llama-cpp loads the model and tokenises llama.cpp's own
 * test vectors to the expected ids, text round-trips, and the trainer's tokenisation (BOS, prompt/completion boundary
 * with merges across it, loss mask) is exactly llama.cpp's and the scorer's.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  allVocabularyNames,
  testLlamaCppSource,
  writeTinyModelWithVocabulary,
} from "./fixtures/llama-cpp-vocabularies.js";
import { alignContinuation } from "../src/backends/llama-cpp/scorer.js";
import { llamaCppTokenizerTests, readGgufHeader, readVocabulary } from "../src/gguf/index.js";
import { openTokenizer } from "../src/training/embedded/embedded-trainer.js";
import { packBatch, tokenizeExamples } from "../src/training/embedded/sft-dataset.js";

const names = await allVocabularyNames();

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-vocabularies-"));
  llama = await getLlama({ gpu: false, build: "never" });
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Prompt/completion pairs whose boundary a BPE or SentencePiece tokenizer may merge across. */
const boundaryExamples = [
  { prompt: "Question: what colour is the sky?\nAnswer: ", completion: "blue." },
  { prompt: "### User\nSay hi.\n\n### Dromedary", completion: "\nHi!\n\n### User\n" },
  { prompt: "The word is un", completion: "believable, he said" },
  { prompt: "Ends with a newline\n", completion: "\nand starts with one" },
  { prompt: "Numbers: 12", completion: "345 and 6.7" },
  { prompt: "Café au lait, 東京", completion: "タワー 🦙!" },
];

/**
 * llama.cpp's detokenizer drops the space before some punctuation for tokenizers that ask for it
 * (`clean_spaces`, as Hugging Face's clean_up_tokenization_spaces does), so those texts come back without it.
 */
function withCleanedSpaces(text: string): string {
  return text
    .replace(/ ([?!.,])/g, "$1")
    .replace(/ '(s|m|re|ve|ll|d) /g, "'$1 ")
    .replace(/ n't/g, "n't");
}

function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

describe("real tokenizers from llama.cpp's source on random-weight models", () => {
  it("finds the vocabularies the other tests rely on", () => {
    expect(names).toEqual(expect.arrayContaining(["llama-bpe", "llama-spm", "qwen2", "gpt-2", "phi-3"]));
    expect(names.length).toBeGreaterThanOrEqual(15);
  });

  for (const name of names) {
    it(name, async () => {
      const source = await testLlamaCppSource();
      const path = join(dir, `${name}.gguf`);
      const vocabulary = await writeTinyModelWithVocabulary(path, name);
      // The tokenizer is copied whole: every tokenizer.* key of the vocabulary file, unchanged.
      const written = await readVocabulary(path);
      expect(written.metadata).toEqual(vocabulary.metadata);
      expect(written.size).toBe(vocabulary.size);
      expect((await readGgufHeader(path)).tensors.find((t) => t.name === "token_embd.weight")?.dims).toEqual([
        32,
        vocabulary.size,
      ]);

      const model: LlamaModel = await llama.loadModel({ modelPath: path });
      const tokenizer = await openTokenizer(path);
      try {
        const id = (key: string) => {
          const entry = vocabulary.metadata[`tokenizer.ggml.${key}`];
          return entry && entry.type !== "array" ? Number(entry.value) : undefined;
        };
        if (id("bos_token_id") !== undefined) expect(model.tokens.bos).toBe(id("bos_token_id"));
        if (id("eos_token_id") !== undefined) expect(model.tokens.eos).toBe(id("eos_token_id"));
        const addBos = vocabulary.metadata["tokenizer.ggml.add_bos_token"];
        if (addBos?.type === "bool") expect(model.tokens.shouldPrependBosToken).toBe(addBos.value);
        const template = vocabulary.metadata["tokenizer.chat_template"];
        if (template?.type === "string")
          expect((model.fileInfo.metadata as { tokenizer?: { chat_template?: string } }).tokenizer?.chat_template).toBe(
            template.value,
          );

        // llama.cpp's own expectations (tests/test-tokenizer-0: no BOS/EOS, special tokens not parsed).
        const tests = await llamaCppTokenizerTests(source, name);
        const texts = tests?.map((test) => test.text) ?? [];
        for (const test of tests ?? []) expect(model.tokenize(test.text, false), test.text).toEqual(test.tokens);

        // Round trips: the text comes back, except where the tokenizer normalises it by design.
        const normalising = model.vocabularyType === "wpm" || model.vocabularyType === "ugm";
        const unknown = id("unknown_token_id");
        for (const text of [...texts, ...boundaryExamples.map((e) => e.prompt + e.completion)]) {
          const ids = model.tokenize(text, false);
          // Text the vocabulary cannot spell (no byte fallback) is lost to the unknown token.
          if (unknown !== undefined && ids.includes(unknown as Token)) continue;
          const back = model.detokenize(ids);
          if (normalising) {
            // Lower-casing, accent and space normalisation: the normal form is a fixed point.
            expect(model.tokenize(back, false), text).toEqual(ids);
          } else if (back !== text) {
            expect(back, text).toBe(withCleanedSpaces(text));
          }
        }

        // The trainer tokenises as llama.cpp does: its BOS rule, the joint text, and the loss from the first token
        // where the joint text departs from the prompt alone, which is also where the scorer starts scoring.
        const bos = model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? [Number(model.tokens.bos)] : [];
        expect(tokenizer.bos).toBe(bos[0]);
        const { examples } = await tokenizeExamples(boundaryExamples, tokenizer, 4096, "error");
        let merged = 0;
        examples.forEach((example, i) => {
          const { prompt, completion } = boundaryExamples[i]!;
          const whole = [...bos, ...model.tokenize(prompt + completion, false).map(Number)];
          const alone = [...bos, ...model.tokenize(prompt, false).map(Number)];
          expect(Array.from(example.tokens)).toEqual(whole);
          expect(example.promptLength).toBe(commonPrefixLength(alone, whole));
          if (example.promptLength < alone.length) merged++;
          const aligned = alignContinuation(model, prompt, completion);
          expect(aligned.condition.map(Number)).toEqual(whole.slice(0, example.promptLength));
          const batch = packBatch(examples, [i], 1);
          const trained = Array.from(batch.targets).filter((_, row) => batch.weights[row]! > 0);
          expect(trained).toEqual(aligned.continuation.map(Number));
          // No EOS is appended (method A.5): the completion's own text ends the example.
          expect(whole.at(-1)).not.toBe(model.tokens.eos === null ? -1 : Number(model.tokens.eos as Token));
        });
        // BPE and SentencePiece vocabularies of the models people train merge a space into the next word.
        if (["llama-bpe", "llama-spm", "qwen2", "gpt-2", "phi-3"].includes(name)) expect(merged).toBeGreaterThan(0);
      } finally {
        await tokenizer.dispose();
        await model.dispose();
      }
    });
  }
});
