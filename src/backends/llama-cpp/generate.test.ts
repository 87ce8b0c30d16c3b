import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { getLlama, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../gguf/index.js";
import { GrowingText } from "./generate.js";

let dir: string;
let model: LlamaModel;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-generate-"));
  const path = join(dir, "tiny.gguf");
  await writeTinyModel(path, { seed: 4 });
  const llama = await getLlama({ gpu: false, build: "never" });
  model = await llama.loadModel({ modelPath: path });
});

afterAll(async () => {
  await model?.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe("GrowingText", () => {
  it("equals detokenizing all generated tokens at every length, across multi-byte characters, spaces and stray bytes (property)", () => {
    // Pieces: text (tokenised with byte fallback for non-ASCII), or a lone byte token that may break UTF-8.
    const piece = fc.oneof(
      fc
        .constantFrom("a", " b", "é", " ✓", "日本", "\n", "  ", "x y", "🙂", "Hello,")
        .map((text) => model.tokenize(text, false)),
      fc.integer({ min: 3, max: 258 }).map((id) => [id as Token]),
    );
    fc.assert(
      fc.property(
        fc.array(piece, { minLength: 1, maxLength: 60 }),
        fc.constantFrom("", "Prompt:", "Q: é"),
        (pieces, prompt) => {
          const tail = prompt ? model.tokenize(prompt, false).slice(-16) : [];
          const growing = new GrowingText(model, tail);
          const generated: Token[] = [];
          for (const tokens of pieces)
            for (const token of tokens) {
              generated.push(token);
              expect(growing.textOf(generated)).toBe(model.detokenize(generated, false, tail));
            }
        },
      ),
      { numRuns: 40 },
    );
  });
});
