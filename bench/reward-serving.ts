/**
 * Reward serving (`selfalign serve --reward-model`, RewardModel): texts/s scoring the same reviewer-sized texts with
 * 1 context and with `--parallel` contexts scoring at once, the same total threads split among them, on the ~19M
 * model with a random rank-8 LoRA and head. Prints both rates and their ratio (on a machine with many cores the
 * contexts run side by side; with few, they share them). Run: `npx tsx bench/reward-serving.ts [--texts 16]
 * [--chars 600] [--parallel 2] [--threads 2] [--rounds 3]`.
 */
import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { readLlamaModelConfig } from "../src/training/embedded/llama-weights.js";
import { createLora } from "../src/training/embedded/lora.js";
import { writeGgufLora } from "../src/training/export/gguf-lora.js";
import { writeRewardHead } from "../src/training/reward/reward-head.js";
import type { RewardModelInfo } from "../src/training/reward/reward-model-info.js";
import { RewardModel } from "../src/training/reward/reward-model.js";
import { numberFlag, withBenchModel } from "./lib/bench-model.js";

const textCount = numberFlag("texts", 16);
const chars = numberFlag("chars", 600);
const parallel = numberFlag("parallel", 2);
const threads = numberFlag("threads", 2);
const rounds = numberFlag("rounds", 3);

await withBenchModel("F32", async ({ path, parameterCount }) => {
  const dir = dirname(path);
  const config = await readLlamaModelConfig(path);
  const lora = createLora(config, {
    rank: 8,
    alpha: 16,
    targets: ["q", "k", "v", "o"],
    seed: 3,
    alloc: (n) => new Float32Array(n),
  });
  for (const module of lora.modules) for (let i = 0; i < module.b.length; i++) module.b[i] = ((i % 7) - 3) / 100;
  await writeGgufLora(join(dir, "adapter.gguf"), lora, config.architecture);
  await writeRewardHead(
    join(dir, "reward-head.safetensors"),
    Float32Array.from({ length: config.dim }, (_, i) => Math.sin(i) / 10),
  );
  const info: RewardModelInfo = {
    format: "selfalign-reward-model",
    version: 1,
    base: "m20.gguf",
    basePath: path,
    adapter: "adapter.gguf",
    head: "reward-head.safetensors",
    hidden: config.dim,
    addBos: true,
  };
  await writeFile(join(dir, "reward-model.json"), JSON.stringify(info));
  const texts = Array.from({ length: textCount }, (_, i) =>
    `Review ${i}: ${"the answer under review, then the request and the principles. ".repeat(20)}`.slice(0, chars),
  );
  console.log(
    `model: ${(parameterCount / 1e6).toFixed(1)}M parameters, ${textCount} texts of ${chars} characters; ` +
      `1 context x ${threads} threads vs ${parallel} contexts x ${Math.max(1, Math.floor(threads / parallel))} threads`,
  );
  const one = await RewardModel.load(dir, { parallel: 1, threads, contextSize: 1024 });
  const many = await RewardModel.load(dir, {
    parallel,
    threads: Math.max(1, Math.floor(threads / parallel)),
    contextSize: 1024,
  });
  const rates: Record<"one" | "many", number[]> = { one: [], many: [] };
  let largestDifference = 0;
  try {
    await one.score(texts.slice(0, 1));
    await many.score(texts.slice(0, parallel));
    // Interleaved rounds, medians: on a shared machine the load changes by the second.
    const timed = async (model: RewardModel, into: number[]) => {
      const start = performance.now();
      const rewards = await model.score(texts);
      into.push(textCount / ((performance.now() - start) / 1000));
      return rewards;
    };
    for (let round = 0; round < rounds; round++) {
      const serial = await timed(one, rates.one);
      const side = await timed(many, rates.many);
      side.forEach((r, i) => {
        largestDifference = Math.max(largestDifference, Math.abs(r - serial[i]!));
      });
    }
  } finally {
    await one.dispose();
    await many.dispose();
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const single = median(rates.one);
  const side = median(rates.many);
  console.log(`1 context:          ${single.toFixed(2)} texts/s`);
  console.log(`${parallel} contexts at once: ${side.toFixed(2)} texts/s`);
  console.log(`ratio ${parallel} contexts / 1: ${(side / single).toFixed(2)}x`);
  console.log(`largest reward difference between the two: ${largestDifference.toExponential(2)}`);
});
