/**
 * Prefix reuse in the embedded backend: N prompts sharing a ~1,500-token prefix (a stage's meta-prompt) with short
 * distinct suffixes, a few tokens generated each, on a ~20M-parameter tiny model. Compares reuse (KV cache of the
 * shared prefix kept per sequence and copied between sequences) with no reuse (every prompt evaluated from
 * scratch), and prints the wall-time ratio (target >= 5) and prompt tokens evaluated per prompt (target <=
 * 1.1 x (prefix + sum of suffixes) / N). Run: `npx tsx bench/prefix-reuse.ts [--prompts 24] [--prefix 1500] [--batch-threads N]`.
 */
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { numberFlag, withBenchModel } from "./lib/bench-model.js";

const prompts = numberFlag("prompts", 24);
const prefixChars = numberFlag("prefix", 1500);
const sequences = numberFlag("sequences", 4);
const newTokens = numberFlag("tokens", 8);
// Threads for prompt evaluation; default all cores. On a busy shared machine, 1 avoids spin-wait contention.
const batchThreads = process.argv.includes("--batch-threads") ? numberFlag("batch-threads", 1) : undefined;

await withBenchModel("F16", async ({ path: modelPath, parameterCount }) => {
  const sentence = "Watson is an AI assistant that follows ethical, informative and helpful principles. ";
  const prefix = sentence.repeat(Math.ceil(prefixChars / sentence.length)).slice(0, prefixChars);
  const requests = Array.from({ length: prompts }, (_, i) => ({
    prompt: `${prefix}\n\nUser: question number ${i}, please answer briefly.\n\nWatson:`,
    temperature: 0,
    maxTokens: newTokens,
    allowEos: false,
  }));

  const run = async (reusePrefix: boolean) => {
    const backend = await createLlamaCppBackend({
      model: modelPath,
      contextSize: 2048,
      sequences,
      reusePrefix,
      batchThreads,
    });
    try {
      const prefixTokens = (await backend.tokenize(prefix, { addBos: true })).length;
      const start = performance.now();
      const results = await completeAll(backend, requests);
      const seconds = (performance.now() - start) / 1000;
      const evaluated = results.reduce((sum, r) => sum + (r.usage.evaluatedPromptTokens ?? 0), 0);
      const promptTokens = results.reduce((sum, r) => sum + r.usage.promptTokens, 0);
      const generated = results.reduce((sum, r) => sum + r.usage.completionTokens, 0);
      return {
        seconds,
        evaluated,
        promptTokens,
        generated,
        prefixTokens,
        texts: results.map((r) => r.completions[0]?.text),
      };
    } finally {
      await backend.close();
    }
  };

  const reuse = await run(true);
  const fresh = await run(false);
  const suffixTokens = reuse.promptTokens - reuse.prefixTokens * prompts;
  const target = (1.1 * (reuse.prefixTokens + suffixTokens)) / prompts;
  const same = reuse.texts.filter((text, i) => text === fresh.texts[i]).length;
  console.log(
    `model: ${(parameterCount / 1e6).toFixed(1)}M parameters (F16), ${sequences} sequences, decode threads measured (auto) / ${batchThreads ?? "all cores"} (prompt)`,
  );
  console.log(
    `${prompts} prompts: shared prefix ${reuse.prefixTokens} tokens, ${(suffixTokens / prompts).toFixed(1)} suffix tokens each, ${newTokens} new tokens each`,
  );
  console.log(
    `no reuse: ${fresh.seconds.toFixed(2)} s, ${(fresh.evaluated / prompts).toFixed(1)} prompt tokens evaluated per prompt`,
  );
  console.log(
    `reuse:    ${reuse.seconds.toFixed(2)} s, ${(reuse.evaluated / prompts).toFixed(1)} prompt tokens evaluated per prompt`,
  );
  console.log(`wall-time ratio no reuse / reuse: ${(fresh.seconds / reuse.seconds).toFixed(2)}x (target >= 5)`);
  console.log(
    `evaluated per prompt ${(reuse.evaluated / prompts).toFixed(1)} vs target <= 1.1 x (prefix + sum suffixes) / N = ${target.toFixed(1)}: ${reuse.evaluated / prompts <= target ? "met" : "NOT met"}`,
  );
  console.log(`greedy outputs identical with and without reuse: ${same}/${prompts}`);
});
