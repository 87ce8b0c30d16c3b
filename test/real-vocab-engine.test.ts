/**
 * The embedded engine and `selfalign serve` on random-weight models with real tokenizers (Llama 3's, with the Llama
 * 3.1 chat template from llama.cpp's models/templates, and Qwen2's, with its own), taken from llama.cpp's source as
 * node-llama-cpp ships it: end-of-generation as the model defines it, stop strings inside multi-character tokens,
 * serve's token ids and log-probabilities against llama.cpp's full logits, and chat prompts rendered with the
 * model's own template.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testVocabulary, vocabularyCache, writeTinyModelWithVocabulary } from "./fixtures/llama-cpp-vocabularies.js";
import { completeAll } from "../src/backends/language-model.js";
import { chatWrapperFor, renderChat } from "../src/backends/llama-cpp/chat-prompt.js";
import { endTokens } from "../src/backends/llama-cpp/generate.js";
import { createLlamaCppBackend, type LlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { resolveChatTemplate, withChatTemplate } from "../src/gguf/index.js";
import { type StartServerResult, startServer } from "../src/serve/server.js";

interface Engine {
  path: string;
  backend: LlamaCppBackend;
  server: StartServerResult;
  /** The same file loaded separately, for llama.cpp's own tokenisation and full logits. */
  model: LlamaModel;
}

let dir: string;
const engines = new Map<string, Engine>();
const cases = [
  { name: "llama-bpe", template: "meta-llama-Llama-3.1-8B-Instruct" },
  { name: "qwen2", template: undefined },
] as const;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-real-vocab-"));
  const llama = await getLlama({ gpu: false, build: "never" });
  for (const { name, template } of cases) {
    const path = join(dir, `${name}.gguf`);
    let vocabulary = await testVocabulary(name);
    if (template)
      vocabulary = withChatTemplate(vocabulary, (await resolveChatTemplate(template, vocabularyCache)).template);
    await writeTinyModelWithVocabulary(path, name, { vocabulary, layers: 2, seed: 3, contextLength: 1024 });
    const backend = await createLlamaCppBackend({ model: path, contextSize: 1024, sequences: 2, threads: 1, seed: 1 });
    const server = await startServer({ model: backend, port: 0, modelName: name });
    engines.set(name, { path, backend, server, model: await llama.loadModel({ modelPath: path }) });
  }
});

afterAll(async () => {
  for (const engine of engines.values()) {
    await engine.server.close();
    await engine.backend.close();
    await engine.model.dispose();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

const engine = (name: string) => engines.get(name)!;

/** log-softmax of llama.cpp's full logits after `prefix`, at each position of `tokens` (an independent path). */
async function llamaCppLogprobs(model: LlamaModel, prefix: Token[], tokens: Token[]): Promise<number[]> {
  const context = await model.createContext({
    contextSize: 256,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    threads: 1,
  });
  try {
    const all = [...prefix, ...tokens];
    const results = await context
      .getSequence()
      .controlledEvaluate(all.slice(0, -1).map((token) => [token, { generateNext: { logits: true } }] as const));
    return tokens.map((token, i) => {
      const logits = results[prefix.length - 1 + i]?.next?.logits;
      if (!logits) throw new Error("no logits");
      let max = Number.NEGATIVE_INFINITY;
      for (const value of logits.values()) max = Math.max(max, value);
      let sum = 0;
      for (const value of logits.values()) sum += Math.exp(value - max);
      const logZ = max + Math.log(sum);
      return logits.get(token)! - logZ;
    });
  } finally {
    await context.dispose();
  }
}

describe.each(cases)("a random model with the $name tokenizer", ({ name }) => {
  it("bans every end-of-generation token the model defines when EOS is not allowed", async () => {
    const { backend, model } = engine(name);
    const ends = endTokens(model);
    // More than EOS: Llama 3 ends at <|eot_id|> too; Qwen2 at <|im_end|> and at a plain "</s>" token.
    expect(ends).toContain(model.tokens.eos);
    expect(ends).toContain(model.tokens.eot);
    const named = (name === "qwen2" ? ["<|endoftext|>", "<|im_end|>", "</s>"] : ["<|end_of_text|>", "<|eot_id|>"]).map(
      (text) => {
        const ids = model.tokenize(text, true);
        expect(ids, text).toHaveLength(1);
        expect(model.isEogToken(ids[0]!), text).toBe(true);
        return ids[0]!;
      },
    );
    expect(ends).toEqual(expect.arrayContaining(named));
    for (const token of new Set([...ends, ...named])) {
      const request = { prompt: "Once upon a time", temperature: 0, maxTokens: 6, logitBias: { [token]: 100 } };
      const [free] = await completeAll(backend, [{ ...request, allowEos: true }]);
      // The end token itself is not part of the completion.
      expect(free!.completions[0]).toMatchObject({ finishReason: "stop", tokenCount: 0, text: "" });
      const [banned] = await completeAll(backend, [{ ...request, allowEos: false }]);
      expect(banned!.completions[0]!.finishReason, `token ${token}`).toBe("length");
      expect(banned!.completions[0]!.tokenCount).toBe(6);
    }
  });

  it("cuts at a stop string that starts inside a token", async () => {
    const { backend, model } = engine(name);
    const request = { prompt: "The weather today", temperature: 0, maxTokens: 24, allowEos: false };
    const [plain] = await completeAll(backend, [request]);
    const text = plain!.completions[0]!.text;
    // A stop string from the middle of one token's text to the middle of the next one.
    const tokens = model.tokenize(text, false);
    let at = -1;
    let stop = "";
    for (let i = 1; i < tokens.length - 2 && at < 0; i++) {
      const before = model.detokenize(tokens.slice(0, i));
      const piece = model.detokenize(tokens.slice(i, i + 1));
      const next = model.detokenize(tokens.slice(i + 1, i + 2));
      if (piece.length >= 2 && next.length >= 2 && text.startsWith(before + piece + next)) {
        stop = piece.slice(1) + next.slice(0, 1);
        if (text.indexOf(stop) === before.length + 1) at = before.length + 1;
      }
    }
    expect(at).toBeGreaterThan(0);
    const [cut] = await completeAll(backend, [{ ...request, stop: [stop] }]);
    expect(cut!.completions[0]).toMatchObject({ text: text.slice(0, at), finishReason: "stop" });
  });

  it("serves token ids and log-probabilities that are llama.cpp's tokenisation and full-logit log-softmax", async () => {
    const { server, model } = engine(name);
    const prompt = "Hello world, this is a llama: 🦙.cpp";
    const response = await fetch(`${server.url}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: name,
        prompt,
        max_tokens: 0,
        echo: true,
        logprobs: 0,
        return_tokens_as_token_ids: true,
      }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      choices: Array<{ text: string; logprobs: { tokens: string[]; token_logprobs: Array<number | null> } }>;
    };
    const choice = body.choices[0]!;
    expect(choice.text).toBe(prompt);
    const ids = model.tokenize(prompt, false);
    expect(choice.logprobs.tokens).toEqual(ids.map((id) => `token_id:${id}`));
    expect(choice.logprobs.token_logprobs[0]).toBeNull();
    // Conditioned on BOS where the model adds one (Llama 3), else on the first token itself (Qwen2).
    const bos = model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? [model.tokens.bos] : [];
    const expected = await llamaCppLogprobs(model, [...bos, ids[0]!], ids.slice(1));
    choice.logprobs.token_logprobs.slice(1).forEach((logprob, i) => {
      expect(Math.abs(logprob! - expected[i]!)).toBeLessThan(1e-3);
    });

    // As text, the tokens spell the prompt.
    const asText = await fetch(`${server.url}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: name, prompt: "Plain words, no emoji.", max_tokens: 0, echo: true, logprobs: 0 }),
    });
    const plain = (await asText.json()) as typeof body;
    expect(plain.choices[0]!.logprobs.tokens.join("")).toBe("Plain words, no emoji.");
  });

  it("renders chat prompts with the model's own template, special tokens as single tokens", async () => {
    const { model } = engine(name);
    const { tokens } = renderChat(model, chatWrapperFor(model), [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi there" },
    ]);
    const text = model.detokenize(tokens, true);
    const special = (piece: string) => model.tokenize(piece, true);
    if (name === "llama-bpe") {
      expect(text).toContain("<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>");
      expect(text.endsWith("<|start_header_id|>assistant<|end_header_id|>\n\n")).toBe(true);
      expect(tokens[0]).toBe(model.tokens.bos);
      for (const piece of ["<|start_header_id|>", "<|eot_id|>"]) {
        expect(special(piece)).toHaveLength(1);
        expect(tokens).toContain(special(piece)[0]);
      }
    } else {
      expect(text).toContain("<|im_start|>user\nHi there<|im_end|>\n");
      expect(text.endsWith("<|im_start|>assistant\n")).toBe(true);
      expect(tokens).toContain(special("<|im_start|>")[0]);
      expect(special("<|im_start|>")).toHaveLength(1);
    }
  });
});
