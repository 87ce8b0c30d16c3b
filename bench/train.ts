/**
 * LoRA training throughput of the embedded trainer on a random LLaMA, sequence length 256, default rank 16 on q, k,
 * v, o: tokens/s and peak RSS per kernel path, and the ratio to PyTorch CPU training the same shape the same way
 * (bench/lib/torch_lora_train.py) when `python3 -c "import torch"` works (Debian: `apt-get install python3-torch`);
 * otherwise it says the comparison was skipped. Target: the WebAssembly path >= 0.9x PyTorch.
 * Run: npx tsx bench/train.ts [--steps 3] [--kernels wasm,blas] [--shape 57m|360m]
 *   [--layers 8 --dim 768 --heads 12 --kv-heads 12 --ffn 2048 --vocab-size 354]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { seededRandom, writeTinyModel } from "../src/gguf/index.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { availableKernels, type KernelName } from "../src/training/embedded/kernels/index.js";
import type { SftExample } from "../src/training/trainer.js";
import { type BenchShape, benchShapes } from "./lib/bench-model.js";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "3" },
    kernels: { type: "string", default: "wasm,blas" },
    layers: { type: "string", default: "8" },
    dim: { type: "string", default: "768" },
    heads: { type: "string", default: "12" },
    ffn: { type: "string", default: "2048" },
    "kv-heads": { type: "string" },
    "vocab-size": { type: "string", default: "354" },
    shape: { type: "string" },
    tied: { type: "boolean", default: false },
    seq: { type: "string", default: "256" },
    "batch-tokens": { type: "string", default: "1024" },
    threads: { type: "string", default: String(availableParallelism()) },
    checkpointing: { type: "string", default: "auto" },
  },
});
// --shape takes a benchmark shape (bench/lib/bench-model.ts) in place of the single flags.
if (values.shape !== undefined) {
  const shape = benchShapes[values.shape as BenchShape];
  if (!shape) throw new Error(`--shape ${values.shape}: expected one of ${Object.keys(benchShapes).join(", ")}`);
  Object.assign(values, {
    layers: String(shape.layers),
    dim: String(shape.dim),
    heads: String(shape.heads),
    "kv-heads": String(shape.kvHeads),
    ffn: String(shape.ffn),
    "vocab-size": String("vocabSize" in shape ? shape.vocabSize : 354),
    tied: "tiedEmbeddings" in shape && shape.tiedEmbeddings,
  });
}
const stepCount = Number(values.steps);
const seq = Number(values.seq);
const threads = Number(values.threads);
const dir = await mkdtemp(join(tmpdir(), "bench-train-"));
const modelPath = join(dir, "bench.gguf");
const { parameterCount } = await writeTinyModel(modelPath, {
  layers: Number(values.layers),
  dim: Number(values.dim),
  heads: Number(values.heads),
  kvHeads: Number(values["kv-heads"] ?? values.heads),
  ffn: Number(values.ffn),
  vocabSize: Number(values["vocab-size"]),
  tiedEmbeddings: values.tied,
  contextLength: 1024,
  dtype: "F16",
});
console.log(
  `model: ${(parameterCount / 1e6).toFixed(1)}M parameters (dim ${values.dim}, ${values.layers} layers, ${values.heads} heads, ${values["kv-heads"] ?? values.heads} KV heads, ffn ${values.ffn}, vocab ${values["vocab-size"]}${values.tied ? ", tied" : ""}), F16 file, seq ${seq}, rank 16 on q,k,v,o, ${threads} threads`,
);

// Digits: one token per character in the byte vocabulary and in the synthetic larger ones (which merge only
// letters), plus BOS and the leading space, so seq - 2 characters.
const random = seededRandom(7);
const text = (n: number) =>
  Array.from({ length: n }, () => String.fromCharCode(48 + Math.floor(random() * 10))).join("");
const examplesPerStep = Math.max(1, Math.floor(Number(values["batch-tokens"]) / (seq - 1)));
const stepTokens = examplesPerStep * (seq - 1);
const examples: SftExample[] = Array.from({ length: examplesPerStep * (stepCount + 1) }, () => ({
  prompt: text(64),
  completion: text(seq - 2 - 64),
}));

// PyTorch on the same shape first, so its figure is there to compare each kernel with.
const torchRate = (() => {
  const script = fileURLToPath(new URL("./lib/torch_lora_train.py", import.meta.url));
  const args = [
    script,
    ...["layers", "dim", "heads", "ffn", "seq", "threads"].map((name) => [`--${name}`, String(values[name as "dim"])]),
    ["--kv-heads", values["kv-heads"] ?? values.heads],
    ["--vocab", values["vocab-size"]],
    ["--batch", String(examplesPerStep)],
    ["--steps", String(stepCount)],
    ...(values.tied ? [["--tied"]] : []),
  ].flat();
  // pyenv and virtualenv shims may hide the system Python that has Debian's python3-torch.
  for (const python of ["python3", "/usr/bin/python3"]) {
    if (spawnSync(python, ["-c", "import torch"], { encoding: "utf8" }).status !== 0) continue;
    const run = spawnSync(python, args, { encoding: "utf8" });
    const line = run.stdout?.trim().split("\n").at(-1);
    if (run.status !== 0 || !line) {
      console.log(`pytorch (${python}): failed: ${(run.stderr ?? "").trim().split("\n").at(-1)}`);
      return undefined;
    }
    const result = JSON.parse(line) as {
      tokens_per_second: number;
      cpu_tokens_per_second: number;
      torch: string;
      threads: number;
    };
    console.log(
      `pytorch ${result.torch} (${python}, CPU, ${result.threads} threads): ${result.tokens_per_second.toFixed(1)} tokens/s wall-clock, ${result.cpu_tokens_per_second.toFixed(1)} tokens/s per ${result.threads} busy cores (CPU-time based); same shape, batch and loss`,
    );
    return { wall: result.tokens_per_second, cpu: result.cpu_tokens_per_second };
  }
  console.log('pytorch: skipped (`python3 -c "import torch"` fails; on Debian: apt-get install python3-torch)');
  return undefined;
})();

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
    `${name}${name === "auto" ? ` (${resolved})` : ""}: ${(tokens / wall).toFixed(1)} tokens/s wall-clock${torchRate ? ` (${(tokens / wall / torchRate.wall).toFixed(2)}x PyTorch${name === "wasm" ? "; target >= 0.9" : ""})` : ""}, ${((tokens * threads) / cpu).toFixed(1)} tokens/s per ${threads} busy cores (CPU-time based${torchRate ? `: ${((tokens * threads) / cpu / torchRate.cpu).toFixed(2)}x PyTorch's` : ""}), over ${steps.length} steps of ${stepTokens} tokens; CPU utilisation ${((100 * cpu) / (wall * threads)).toFixed(0)}%; total wall ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}
console.log(`peak RSS: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
await rm(dir, { recursive: true, force: true });
