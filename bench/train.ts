/**
 * LoRA training throughput of the embedded trainer on a ~60M-parameter random LLaMA (byte vocabulary),
 * sequence length 256, default rank 16 on q, k, v, o: tokens/s and peak RSS per kernel path.
 * Run: npx tsx bench/train.ts [--steps 3] [--kernels wasm,blas] [--layers 8 --dim 768 --heads 12 --ffn 2048]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { seededRandom, writeTinyModel } from "../src/gguf/index.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { availableKernels, type KernelName } from "../src/training/embedded/kernels/index.js";
import type { SftExample } from "../src/training/trainer.js";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "3" },
    kernels: { type: "string", default: "wasm,blas" },
    layers: { type: "string", default: "8" },
    dim: { type: "string", default: "768" },
    heads: { type: "string", default: "12" },
    ffn: { type: "string", default: "2048" },
    seq: { type: "string", default: "256" },
    "batch-tokens": { type: "string", default: "1024" },
    threads: { type: "string", default: String(availableParallelism()) },
    checkpointing: { type: "string", default: "auto" },
  },
});
const stepCount = Number(values.steps);
const seq = Number(values.seq);
const threads = Number(values.threads);
const dir = await mkdtemp(join(tmpdir(), "bench-train-"));
const modelPath = join(dir, "bench.gguf");
const { parameterCount } = await writeTinyModel(modelPath, {
  layers: Number(values.layers),
  dim: Number(values.dim),
  heads: Number(values.heads),
  kvHeads: Number(values.heads),
  ffn: Number(values.ffn),
  contextLength: 1024,
  dtype: "F16",
});
console.log(
  `model: ${(parameterCount / 1e6).toFixed(1)}M parameters (dim ${values.dim}, ${values.layers} layers, ${values.heads} heads, ffn ${values.ffn}, vocab 354), F16 file, seq ${seq}, rank 16 on q,k,v,o, ${threads} threads`,
);

// Byte-vocab text: one token per character plus BOS and the leading space, so seq - 2 characters.
const random = seededRandom(7);
const text = (n: number) =>
  Array.from({ length: n }, () => String.fromCharCode(97 + Math.floor(random() * 26))).join("");
const examplesPerStep = Math.max(1, Math.floor(Number(values["batch-tokens"]) / (seq - 1)));
const stepTokens = examplesPerStep * (seq - 1);
const examples: SftExample[] = Array.from({ length: examplesPerStep * (stepCount + 1) }, () => ({
  prompt: text(64),
  completion: text(seq - 2 - 64),
}));

const available = new Map(availableKernels().map((k) => [k.name, k]));
for (const name of values.kernels.split(",") as Array<KernelName | "auto">) {
  if (name !== "auto" && !available.get(name)?.available) {
    console.log(`${name}: not available here (${available.get(name)?.reason ?? "unknown kernel"})`);
    continue;
  }
  // Per step: wall-clock tokens/s, and tokens per CPU-second of this process × threads, which estimates the
  // rate on an idle machine when other processes compete for the cores (it assumes every thread stays busy).
  const steps: Array<{ tokens: number; wall: number; cpu: number }> = [];
  let lastWall = 0;
  let lastCpu = 0;
  const cpuSeconds = () => {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  };
  const resolved = name === "auto" ? availableKernels().find((k) => k.available)?.name : name;
  const started = performance.now();
  await new EmbeddedTrainer().train({
    base: modelPath,
    examples,
    output: join(dir, `out-${name}`),
    options: {
      kernel: name,
      threads,
      maxSteps: stepCount + 1,
      batchTokens: Number(values["batch-tokens"]),
      checkpointEvery: 0,
      activationCheckpointing: values.checkpointing === "auto" ? "auto" : values.checkpointing === "true",
    },
    onProgress: (event) => {
      if (event.type !== "train-step") return;
      const wall = performance.now() / 1000;
      const cpu = cpuSeconds();
      if (event.step > 1) steps.push({ tokens: stepTokens, wall: wall - lastWall, cpu: cpu - lastCpu });
      lastWall = wall;
      lastCpu = cpu;
    },
  });
  // The first step warms up worker pools and caches and is not counted.
  const tokens = steps.reduce((a, s) => a + s.tokens, 0);
  const wall = steps.reduce((a, s) => a + s.wall, 0);
  const cpu = steps.reduce((a, s) => a + s.cpu, 0);
  console.log(
    `${name}${name === "auto" ? ` (${resolved})` : ""}: ${(tokens / wall).toFixed(1)} tokens/s wall-clock, ${((tokens * threads) / cpu).toFixed(1)} tokens/s per ${threads} busy cores (CPU-time based), over ${steps.length} steps of ${stepTokens} tokens; CPU utilisation ${((100 * cpu) / (wall * threads)).toFixed(0)}%; total wall ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}
console.log(`peak RSS: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
await rm(dir, { recursive: true, force: true });
