/**
 * Parallel decoding in the embedded backend: aggregate generated tokens/s with 1, 4 and 16 sequences decoding at
 * once in one llama.cpp context (threads 1), on a ~20M-parameter tiny model. The same 16 requests are run at each
 * setting. Target: 16 sequences >= 1.3x the tokens/s of 1. Also prints the tokens per native decode step, which shows
 * whether the sequences were decoded together (src/backends/llama-cpp/native-batch.ts). Run: `npx tsx bench/parallel.ts [--tokens 64] [--requests 16] [--rounds 3] [--f16]`.
 */
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { numberFlag, withBenchModel } from "./lib/bench-model.js";

const newTokens = numberFlag("tokens", 64);
const requestsCount = numberFlag("requests", 16);
const dtype = process.argv.includes("--f16") ? "F16" : "F32";
await withBenchModel(dtype, async ({ path: modelPath, parameterCount }) => {
  const requests = Array.from({ length: requestsCount }, (_, i) => ({
    prompt: `Request ${i}: write something.`,
    temperature: 0.8,
    seed: i,
    maxTokens: newTokens,
    allowEos: false,
  }));
  console.log(
    `model: ${(parameterCount / 1e6).toFixed(1)}M parameters (${dtype}), threads 1, ${requestsCount} requests x ${newTokens} tokens`,
  );
  // Interleave the settings over several rounds and take medians: on a shared machine the load changes by the second.
  const rounds = numberFlag("rounds", 3);
  const settings = [1, 4, 16];
  const backends = await Promise.all(
    settings.map((sequences) =>
      createLlamaCppBackend({ model: modelPath, contextSize: 256, sequences, threads: 1, batchThreads: 1 }),
    ),
  );
  const rates = new Map<number, number[]>(settings.map((s) => [s, []]));
  try {
    for (const backend of backends) await completeAll(backend, [{ prompt: "warm up", maxTokens: 4, temperature: 0 }]);
    for (let round = 0; round < rounds; round++)
      for (const [i, backend] of backends.entries()) {
        const start = performance.now();
        const results = await completeAll(backend, requests);
        const seconds = (performance.now() - start) / 1000;
        const generated = results.reduce((sum, r) => sum + r.usage.completionTokens, 0);
        rates.get(settings[i] as number)?.push(generated / seconds);
      }
  } finally {
    await Promise.all(backends.map((backend) => backend.close()));
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
  for (const [i, sequences] of settings.entries()) {
    const values = rates.get(sequences) ?? [];
    const stats = backends[i]?.decodeStats();
    // Decode steps: native calls without prompt tokens (each sequence adds at most one token).
    const steps = Object.entries(stats?.callsBySize ?? {}).filter(([size]) => Number(size) <= sequences);
    const stepCalls = steps.reduce((sum, [, calls]) => sum + calls, 0);
    const stepTokens = steps.reduce((sum, [size, calls]) => sum + Number(size) * calls, 0);
    const perStep = (stepTokens / Math.max(1, stepCalls)).toFixed(1);
    console.log(
      `${String(sequences).padStart(2)} sequences: median ${median(values).toFixed(1)} tokens/s (rounds: ${values.map((v) => v.toFixed(0)).join(", ")}), ${perStep} tokens per decode step`,
    );
  }
  const one = median(rates.get(1) ?? []);
  console.log(`ratio 4 vs 1: ${(median(rates.get(4) ?? []) / one).toFixed(2)}x`);
  console.log(`ratio 16 vs 1: ${(median(rates.get(16) ?? []) / one).toFixed(2)}x (target >= 1.3)`);
});
