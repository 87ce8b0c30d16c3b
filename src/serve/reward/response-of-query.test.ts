import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeTinyModel } from "../../gguf/index.js";
import { readSpecialTokens, responseOfQuery } from "./response-of-query.js";

// The texts a LLaMA-2 tokenizer decodes its specials to, and a ChatML model's end-of-turn marker.
const special = { all: ["<s>", "</s>", "<|im_end|>", "<unk>"], end: ["</s>", "<|im_end|>"] };
const prompt = "A system text.\n### User\nName a colour.\n\n### Bactrian";

describe("responseOfQuery", () => {
  it("cuts the prompt off the decoded query and removes special-token texts; an EOS at the end means it stopped", () => {
    expect(responseOfQuery(`${prompt}\nBlue.\n\n### User\n</s>`, prompt, special)).toEqual({
      response: "\nBlue.\n\n### User\n",
      stopped: true,
      match: "prefix",
    });
    expect(responseOfQuery(`${prompt}\nBlue, or green, or`, prompt, special)).toMatchObject({ stopped: false });
    expect(responseOfQuery(`${prompt} Red.<|im_end|>\n`, prompt, special)).toMatchObject({
      response: " Red.\n",
      stopped: true,
    });
  });

  it("a stop string inside the response means it stopped, as the engraved format's next-turn marker does", () => {
    const query = `${prompt}\nBlue.\n\n### User\nAnd another?`;
    expect(responseOfQuery(query, prompt, special, ["### User"])).toMatchObject({ stopped: true });
    expect(responseOfQuery(query, prompt, special, [])).toMatchObject({ stopped: false });
  });

  it("finds a prompt the decode re-spaced after BOS, or cut from the left, by its last characters", () => {
    expect(responseOfQuery(`<s> ${prompt}\nBlue.</s>`, prompt, special)).toEqual({
      response: "\nBlue.",
      stopped: true,
      match: "tail",
    });
    const long = `${"word ".repeat(200)}${prompt}`;
    expect(responseOfQuery(`${long.slice(600)}\nGreen.</s>`, long, special)).toMatchObject({
      response: "\nGreen.",
      match: "tail",
    });
  });

  it("returns undefined when the prompt is not in the query", () => {
    expect(responseOfQuery("Something else entirely.</s>", prompt, special)).toBeUndefined();
  });

  it("reads a GGUF vocabulary's control tokens and its end-of-turn token", async () => {
    const dir = await mkdtemp(join(tmpdir(), "special-tokens-"));
    try {
      const path = join(dir, "tiny.gguf");
      await writeTinyModel(path, { dim: 16, heads: 2, kvHeads: 1, ffn: 32, layers: 1, contextLength: 64 });
      expect(await readSpecialTokens(path)).toEqual({ all: ["<s>", "</s>"], end: ["</s>"] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
