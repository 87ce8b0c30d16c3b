/**
 * The embedded engine against llama.cpp's own server (same llama.cpp release, built once from node-llama-cpp's
 * source bundle: bench/lib/llama-server.ts) on the two generation workloads of the pipeline:
 *   stage 1: 24 short prompts -> 256 new tokens each;
 *   stage 2: 24 prompts sharing a ~1,860-token prefix (a stage's meta-prompt) -> 64 new tokens each.
 * Both sides: 4 parallel sequences (llama-server `-np 4 -cb`, `cache_prompt`), greedy, end-of-sequence ignored, 2048
 * tokens per sequence, flash attention off, threads as each chooses by default on this machine (the server: all
 * cores). Prints generated tokens/s, the ratio embedded / server (target >= 0.95) and how many greedy outputs are
 * identical. Run: `npx tsx bench/decode-vs-llama-server.ts [--shape 57m,360m] [--prompts 24] [--tokens 256]
 * [--prefix-tokens 1860] [--prefix-new-tokens 64] [--rounds 2] [--stages 1,2]`. Each workload runs `--rounds` times, who
 * goes first alternating, and the median ratio is printed with the spread.
 */
import { availableParallelism, loadavg } from "node:os";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend, type LlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { textOfTokens } from "../src/backends/llama-cpp/measure-speed.js";
import { cachedBenchModel, numberFlag, shapeFlag } from "./lib/bench-model.js";
import { llamaServerBinary, startLlamaServer } from "./lib/llama-server.js";

const promptCount = numberFlag("prompts", 24);
const stage1Tokens = numberFlag("tokens", 256);
const prefixTokens = numberFlag("prefix-tokens", 1860);
const stage2Tokens = numberFlag("prefix-new-tokens", 64);
const rounds = numberFlag("rounds", 2);
const stagesAt = process.argv.indexOf("--stages");
const stagesToRun =
  stagesAt >= 0
    ? String(process.argv[stagesAt + 1])
        .split(",")
        .map(Number)
    : [1, 2];
const sequences = 4;
const contextSize = 2048;
const words = "assistant answer question helpful honest principle topic instruction example reply".split(" ");

interface Workload {
  name: string;
  prompts: string[];
  maxTokens: number;
}

async function serverRun(
  url: string,
  workload: Workload,
): Promise<{ seconds: number; texts: string[]; tokens: number }> {
  const start = performance.now();
  const results = await Promise.all(
    workload.prompts.map(async (prompt) => {
      const response = await fetch(`${url}/completion`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          prompt,
          n_predict: workload.maxTokens,
          temperature: 0,
          top_k: 1,
          ignore_eos: true,
          cache_prompt: true,
          samplers: ["top_k"],
        }),
      });
      if (!response.ok) throw new Error(`llama-server answered ${response.status}: ${await response.text()}`);
      return (await response.json()) as { content: string; tokens_predicted: number };
    }),
  );
  return {
    seconds: (performance.now() - start) / 1000,
    texts: results.map((r) => r.content),
    tokens: results.reduce((sum, r) => sum + r.tokens_predicted, 0),
  };
}

async function embeddedRun(
  backend: LlamaCppBackend,
  workload: Workload,
): Promise<{ seconds: number; texts: string[]; tokens: number; outsideDecodeMs: number }> {
  const before = backend.decodeStats();
  const start = performance.now();
  const results = await completeAll(
    backend,
    workload.prompts.map((prompt) => ({ prompt, maxTokens: workload.maxTokens, temperature: 0, allowEos: false })),
  );
  const wallMs = performance.now() - start;
  const after = backend.decodeStats();
  const calls = Math.max(1, after.decodeCalls - before.decodeCalls);
  return {
    seconds: wallMs / 1000,
    texts: results.map((r) => r.completions[0]?.text ?? ""),
    tokens: results.reduce((sum, r) => sum + r.usage.completionTokens, 0),
    // Sampling, scheduling and waiting per decode call: the wall time not spent inside llama_decode.
    outsideDecodeMs: (wallMs - (after.decodeMilliseconds - before.decodeMilliseconds)) / calls,
  };
}

const binary = llamaServerBinary();
for (const shape of shapeFlag(["57m", "360m"])) {
  const { path, parameterCount } = await cachedBenchModel(shape);
  const backend = await createLlamaCppBackend({ model: path, contextSize, sequences });
  const server = await startLlamaServer(binary, path, [
    "-np",
    String(sequences),
    "-cb",
    "-c",
    String(contextSize * sequences),
    "-t",
    String(availableParallelism()),
    "--flash-attn",
    "off",
  ]);
  try {
    const prefix = await textOfTokens(
      backend,
      "You are a helpful assistant. Follow the principles.",
      prefixTokens,
      words,
    );
    console.log(`  prefix: ${await backend.countTokens(prefix)} tokens (asked for ${prefixTokens})`);
    const workloads: Workload[] = [
      {
        name: `stage 1: ${promptCount} short prompts -> ${stage1Tokens}`,
        prompts: Array.from({ length: promptCount }, (_, i) => `Instruction ${i}: write about topic ${i * 7}.`),
        maxTokens: stage1Tokens,
      },
      {
        name: `stage 2: ${promptCount} prompts sharing a ${prefixTokens}-token prefix -> ${stage2Tokens}`,
        prompts: Array.from({ length: promptCount }, (_, i) => `${prefix}\n\nUser: question ${i}?\n\nAssistant:`),
        maxTokens: stage2Tokens,
      },
    ];
    console.log(`${shape} shape (${(parameterCount / 1e6).toFixed(0)}M parameters), ${sequences} sequences each side`);
    // Warm both up (threads, the automatic thread choice's first measurements).
    await embeddedRun(backend, { name: "warm-up", prompts: ["warm up"], maxTokens: 16 });
    await serverRun(server.url, { name: "warm-up", prompts: ["warm up"], maxTokens: 16 });
    for (const workload of workloads.filter((_, index) => stagesToRun.includes(index + 1))) {
      const ratios: number[] = [];
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first, so neither always meets the machine's load first.
        const embedded = round % 2 === 0 ? await embeddedRun(backend, workload) : undefined;
        const served = await serverRun(server.url, workload);
        const ourRun = embedded ?? (await embeddedRun(backend, workload));
        const ours = ourRun.tokens / ourRun.seconds;
        const theirs = served.tokens / served.seconds;
        ratios.push(ours / theirs);
        const same = ourRun.texts.filter((text, i) => text === served.texts[i]).length;
        // Where outputs differ, how far they agree first (a float-rounding difference between the two batchings flips
        // a near-tie of this random-weight model's logits, and the texts part from there).
        const agreed = ourRun.texts.map((text, i) => {
          const theirText = served.texts[i] ?? "";
          let k = 0;
          while (k < text.length && text[k] === theirText[k]) k++;
          return k / Math.max(1, text.length, theirText.length);
        });
        const meanAgreed = agreed.reduce((sum, part) => sum + part, 0) / Math.max(1, agreed.length);
        console.log(
          `  ${workload.name}, round ${round + 1} (${round % 2 === 0 ? "embedded" : "llama-server"} first, load ${loadavg()[0]?.toFixed(1)}): embedded ${ours.toFixed(1)} tokens/s (${ourRun.seconds.toFixed(1)} s), llama-server ${theirs.toFixed(1)} tokens/s (${served.seconds.toFixed(1)} s) -> ${(ours / theirs).toFixed(2)}x (embedded: ${ourRun.outsideDecodeMs.toFixed(2)} ms per decode call outside llama_decode); greedy outputs identical ${same}/${workload.prompts.length} (agreeing for ${(100 * meanAgreed).toFixed(0)}% of their text on average)`,
        );
      }
      const sorted = [...ratios].sort((a, b) => a - b);
      const median =
        sorted.length % 2 === 1
          ? (sorted[(sorted.length - 1) / 2] as number)
          : ((sorted[sorted.length / 2 - 1] as number) + (sorted[sorted.length / 2] as number)) / 2;
      console.log(
        `  ${workload.name}: median ${median.toFixed(2)}x llama-server over ${rounds} round(s) (spread ${(sorted[0] as number).toFixed(2)}-${(sorted.at(-1) as number).toFixed(2)}; target >= 0.95)`,
      );
    }
  } finally {
    await server.close();
    await backend.close();
  }
}
