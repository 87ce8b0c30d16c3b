/**
 * Decode threads chosen by measurement ("auto", the embedded backend's default) against fixed 1 thread and fixed
 * all-cores, for 1 and 4 parallel sequences on a 57M and a 269M F16 model. Which fixed setting is faster depends on
 * the machine and the batch (a VM's per-call thread synchronisation cost favours 1 thread for one sequence); the
 * figure of merit is auto / best fixed, per row. Run: `npx tsx bench/threads.ts [--tokens 48]`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { type TinyModelOptions, writeTinyModel } from "../src/gguf/index.js";
import { numberFlag } from "./lib/bench-model.js";

const newTokens = numberFlag("tokens", 48);
const cores = availableParallelism();
const models: Array<[string, TinyModelOptions]> = [
  ["57M F16", { layers: 8, dim: 768, heads: 12, kvHeads: 12, ffn: 2048, dtype: "F16" }],
  ["269M F16", { layers: 16, dim: 1024, heads: 16, kvHeads: 16, ffn: 4096, dtype: "F16" }],
];
const dir = await mkdtemp(join(tmpdir(), "selfalign-bench-threads-"));
try {
  console.log(`${cores} cores; ${newTokens} new tokens per sequence; tokens/s (aggregate)`);
  for (const [name, options] of models) {
    const path = join(dir, "model.gguf");
    await writeTinyModel(path, { ...options, contextLength: 1024, seed: 1 });
    for (const sequences of [1, 4]) {
      const rates = new Map<string, number>();
      let chosen = "";
      for (const threads of [1, cores, "auto"] as const) {
        const backend = await createLlamaCppBackend({ model: path, contextSize: 256, sequences, threads });
        try {
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
          rates.set(String(threads), results.reduce((sum, r) => sum + r.usage.completionTokens, 0) / seconds);
          if (threads === "auto") chosen = JSON.stringify(backend.decodeStats().threadChoices);
        } finally {
          await backend.close();
        }
      }
      const best = Math.max(rates.get("1") ?? 0, rates.get(String(cores)) ?? 0);
      const auto = rates.get("auto") ?? 0;
      console.log(
        `${name}, ${sequences} sequence(s): 1 thread ${rates.get("1")?.toFixed(1)}, ${cores} threads ${rates.get(String(cores))?.toFixed(1)}, auto ${auto.toFixed(1)} (chose ${chosen}); auto / best fixed ${(auto / best).toFixed(2)}`,
      );
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
