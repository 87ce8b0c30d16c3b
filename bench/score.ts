/**
 * Scoring speed of the embedded backend (`score`, what SALMON's judge and every multiple-choice eval run).
 * 1. One call: 8 continuations of a ~564-token prompt, items/s against ONE batched evaluation of the same tokens
 *    (prompt + all 8 continuations as one sequence on an exact context: the least work that scoring can do).
 *    Target >= 0.9x.
 * 2. Four calls whose prompts share a ~500-token prefix and differ at the end (judge prompts), 8 continuations
 *    each: all four at once against one at a time (each call reusing the prefix the previous one left cached).
 *    Target >= 2x.
 * Each repetition uses prompts that start differently, so nothing is cached from the one before; ratios are taken
 * within a repetition and printed per repetition (the machine is shared, so figures move).
 * Run: `npx tsx bench/score.ts [--shape 57m,360m] [--repeats 3]`.
 */
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { createLlamaCppBackend, type LlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { cachedBenchModel, numberFlag, shapeFlag } from "./lib/bench-model.js";

const repeats = numberFlag("repeats", 3);
const promptTokens = numberFlag("prompt-tokens", 564);
const continuations = [
  " The first answer is better because it is honest.",
  " The second answer is better.",
  " Neither answer follows the principle.",
  " Both answers are equally helpful and correct.",
  " (a)",
  " (b)",
  " I cannot tell which one is better without more context.",
  " The first one, since it explains its reasoning step by step.",
];
const words =
  "principle honest helpful harmless answer question reason explain careful polite correct fair brief clear evidence".split(
    " ",
  );

/** Text of about `tokens` tokens for this model (the synthetic vocabulary packs letters into fewer tokens). */
async function textOfTokens(backend: LlamaCppBackend, seed: number, tokens: number): Promise<string> {
  let text = "";
  let i = seed;
  while ((await backend.countTokens(text)) < tokens) text += `${words[(i++ * 7) % words.length]} `;
  return text;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const spread = (values: number[]) => `${Math.min(...values).toFixed(2)}-${Math.max(...values).toFixed(2)}`;

for (const shape of shapeFlag(["57m", "360m"])) {
  const { path, parameterCount } = await cachedBenchModel(shape);
  const backend = await createLlamaCppBackend({ model: path, contextSize: 2048, sequences: 1 });
  // The baseline: one sequence on an exact context (F32 KV cache, no flash attention), as the scoring context.
  const context = await backend.model.createContext({
    contextSize: 2048,
    sequences: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
  const sequence: LlamaContextSequence = context.getSequence();
  try {
    const body = await textOfTokens(backend, 0, promptTokens - 8);
    const tails = await Promise.all([1, 2, 3, 4].map((k) => textOfTokens(backend, 100 * k, 64)));
    const oneRatios: number[] = [];
    const concurrentRatios: number[] = [];
    await backend.score("warm up", [" once"]);
    const stats = await backend.scoreDecodeStats();
    console.log(
      `${shape} shape (${(parameterCount / 1e6).toFixed(0)}M parameters), ${promptTokens}-token prompt, ${continuations.length} continuations, ${stats.sequences} scoring sequences`,
    );
    for (let r = 0; r < repeats; r++) {
      const prompt = `Run ${r}. ${body}\nVerdict:`;
      // 1. One call against one batched evaluation of the same tokens.
      const whole = await backend.tokenize(prompt + continuations.join(""), { addBos: true });
      const promptLength = (await backend.tokenize(prompt, { addBos: true })).length;
      await sequence.clearHistory();
      let start = performance.now();
      await sequence.controlledEvaluate(
        whole.slice(0, -1).map((token, i) =>
          i < promptLength - 1
            ? (token as Token)
            : [
                token as Token,
                {
                  generateNext: {
                    logits: { filter: { tokens: [whole[i + 1] as Token], includeTop: 1 } },
                    totalLogitWeight: true,
                  },
                },
              ],
        ),
      );
      const batchedSeconds = (performance.now() - start) / 1000;
      start = performance.now();
      await backend.score(prompt, continuations);
      const scoreSeconds = (performance.now() - start) / 1000;
      oneRatios.push(batchedSeconds / scoreSeconds);

      // 2. Four judge prompts: one at a time, then (with other openings, nothing cached) all at once.
      const judges = (opening: string) => tails.map((tail) => `${opening} ${body}\n${tail}\nVerdict:`);
      start = performance.now();
      for (const judge of judges(`Sequential ${r}.`)) await backend.score(judge, continuations);
      const sequentialSeconds = (performance.now() - start) / 1000;
      start = performance.now();
      await Promise.all(judges(`Together ${r}.`).map((judge) => backend.score(judge, continuations)));
      const togetherSeconds = (performance.now() - start) / 1000;
      concurrentRatios.push(sequentialSeconds / togetherSeconds);
      console.log(
        `  ${shape} repeat ${r + 1}: batched evaluation ${batchedSeconds.toFixed(2)} s (${whole.length} tokens), score ${scoreSeconds.toFixed(2)} s -> ${(batchedSeconds / scoreSeconds).toFixed(2)}x; ` +
          `4 judge calls one at a time ${sequentialSeconds.toFixed(2)} s, together ${togetherSeconds.toFixed(2)} s -> ${(sequentialSeconds / togetherSeconds).toFixed(2)}x`,
      );
    }
    console.log(
      `  score items/s vs one batched evaluation: median ${median(oneRatios).toFixed(2)}x (spread ${spread(oneRatios)}; target >= 0.9)`,
    );
    console.log(
      `  4 concurrent calls vs one at a time: median ${median(concurrentRatios).toFixed(2)}x (spread ${spread(concurrentRatios)}; target >= 2)`,
    );
  } finally {
    await context.dispose();
    await backend.close();
  }
}
