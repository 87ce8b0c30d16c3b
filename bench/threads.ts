/**
 * Decode threads: the embedded backend's default ("auto" on the persistent threadpool, native/threadpool) against
 * fixed 1 thread and fixed all-cores on the same pool, and against the old path without the pool (threads started per
 * decode call, "auto" measuring 1 against all cores), for 1 and 4 parallel sequences on a 57M and a 269M F16 model.
 * Configurations alternate over `--rounds` rounds (in a rotated order) and each figure is the median, so the machine's load meets all of
 * them alike. Figures of merit per row: default / best fixed (target >= 1, the automatic choice must not lose to a
 * fixed count) and default / the old default. Run: `npx tsx bench/threads.ts [--tokens 48] [--rounds 3]`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { type TinyModelOptions, writeTinyModel } from "../src/gguf/index.js";
import { numberFlag } from "./lib/bench-model.js";

const newTokens = numberFlag("tokens", 48);
const rounds = numberFlag("rounds", 3);
const cores = availableParallelism();
const models: Array<[string, TinyModelOptions]> = [
  ["57M F16", { layers: 8, dim: 768, heads: 12, kvHeads: 12, ffn: 2048, dtype: "F16" }],
  ["269M F16", { layers: 16, dim: 1024, heads: 16, kvHeads: 16, ffn: 4096, dtype: "F16" }],
];
const configs = [
  { name: "default", threads: "auto", persistentThreads: true },
  { name: "1 thread", threads: 1, persistentThreads: true },
  { name: `${cores} threads`, threads: cores, persistentThreads: true },
  { name: "old default", threads: "auto", persistentThreads: false },
] as const;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

const dir = await mkdtemp(join(tmpdir(), "selfalign-bench-threads-"));
try {
  console.log(`${cores} cores; ${newTokens} new tokens per sequence; tokens/s (aggregate), median of ${rounds} rounds`);
  for (const [name, options] of models) {
    const path = join(dir, "model.gguf");
    await writeTinyModel(path, { ...options, contextLength: 1024, seed: 1 });
    for (const sequences of [1, 4]) {
      const rates = new Map<string, number[]>();
      let pooled = false;
      for (let round = 0; round < rounds; round++)
        // Each round starts with a different configuration, so none always follows the same one.
        for (const config of [...configs.slice(round % configs.length), ...configs.slice(0, round % configs.length)]) {
          const backend = await createLlamaCppBackend({
            model: path,
            contextSize: 256,
            sequences,
            threads: config.threads,
            persistentThreads: config.persistentThreads,
          });
          try {
            if (config.name === "default") pooled = backend.decodeStats().persistentThreads;
            await completeAll(backend, [{ prompt: "warm up", maxTokens: 4 }]);
            const requests = Array.from({ length: sequences }, (_, i) => ({
              prompt: `Request ${i}:`,
              maxTokens: newTokens,
              temperature: 0.8,
              seed: i,
              allowEos: false,
            }));
            const start = performance.now();
            const results = await completeAll(backend, requests);
            const seconds = (performance.now() - start) / 1000;
            const rate = results.reduce((sum, r) => sum + r.usage.completionTokens, 0) / seconds;
            rates.set(config.name, [...(rates.get(config.name) ?? []), rate]);
          } finally {
            await backend.close();
          }
        }
      const rate = (config: string) => median(rates.get(config) ?? [0]);
      const best = Math.max(rate("1 thread"), rate(`${cores} threads`));
      console.log(
        `${name}, ${sequences} sequence(s)${pooled ? "" : " (no threadpool: the addon is not built)"}: ${configs.map((c) => `${c.name} ${rate(c.name).toFixed(1)}`).join(", ")}; default / best fixed ${(rate("default") / best).toFixed(2)} (target >= 1), default / old default ${(rate("default") / rate("old default")).toFixed(2)}`,
      );
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
