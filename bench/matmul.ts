/**
 * sgemm speed of every kernel path on this machine: GFLOP/s at 512³ and 1024³ with 1 and 2 threads, plus one
 * shape from LoRA training (activations × frozen weightᵀ), each as a ratio to OpenBLAS on the same shape and threads
 * (the practical ceiling: a tuned BLAS on these cores) and to the theoretical peak at the nominal clock. A VM does
 * not tell its real clock (turbo, and a timing loop cannot measure it reliably: it read 5.58 GHz on a 2.6 GHz
 * vCPU), so the peak is at the clock /proc/cpuinfo states and real figures may exceed it when the cores boost.
 * Run: `npx tsx bench/matmul.ts` (after `npm run build`, which compiles the WebAssembly kernel and the addon).
 * Figures are wall-clock, best of several runs; other processes on the machine lower them, so compare ratios
 * taken in the same run.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { availableKernels, createKernel, type KernelName } from "../src/training/embedded/kernels/index.js";

interface Peak {
  gflops: number;
  derivation: string;
}

/** Theoretical fp32 peak = cores × FMA units × fp32 lanes per unit × 2 FLOP per FMA × nominal clock (/proc/cpuinfo). */
function machinePeak(): Peak {
  let cpuinfo = "";
  try {
    cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    // Not Linux: fall through to the defaults below and say so.
  }
  const field = (name: string) => cpuinfo.match(new RegExp(`^${name}\\s*:\\s*(.+)$`, "m"))?.[1]?.trim();
  const flags = new Set((field("flags") ?? "").split(/\s+/));
  const model = field("model name") ?? "unknown CPU";
  const amd = field("vendor_id") === "AuthenticAMD";
  const family = Number(field("cpu family"));
  const cores = availableParallelism();
  const mhz = Number(field("cpu MHz"));
  const bogomips = Number(field("bogomips"));
  const nominalGHz = Number.isFinite(mhz) && mhz > 0 ? mhz / 1000 : Number.isFinite(bogomips) ? bogomips / 2000 : 2.5;
  const nominalSource =
    Number.isFinite(mhz) && mhz > 0
      ? `cpu MHz ${mhz}`
      : Number.isFinite(bogomips)
        ? `BogoMIPS ${bogomips} / 2`
        : "no /proc/cpuinfo clock, assumed 2.5";
  const clockGHz = nominalGHz;
  // FMA datapath width: AMD Zen 1-4 (families 23 and 25) execute AVX-512 as two 256-bit halves, so 8 fp32
  // lanes per unit even with avx512f; Zen 5 (family 26) and Intel server cores with avx512f have 512-bit units.
  let lanes: number;
  let width: string;
  if (flags.has("avx512f") && !(amd && family < 26)) {
    lanes = 16;
    width = "avx512f, 512-bit units";
  } else if (flags.has("avx2") || flags.has("avx")) {
    lanes = 8;
    width = flags.has("avx512f") ? "avx512f on AMD family " + family + ": 256-bit units" : "avx2, 256-bit units";
  } else {
    lanes = 4;
    width = "sse, 128-bit units";
  }
  // Two FMA pipes per core on every recent x86 core (Zen 1-5, Skylake and later); without FMA a multiply and an
  // add pipe give the same 2 FLOP per lane per cycle.
  const fmaUnits = 2;
  const gflops = cores * fmaUnits * lanes * 2 * clockGHz;
  const derivation =
    `${model} (${amd ? "AMD" : "other"} family ${family}): ${cores} cores × ${fmaUnits} FMA units × ${lanes} fp32 lanes ` +
    `(${width}${flags.has("fma") ? ", fma" : ", no fma"}) × 2 FLOP/FMA × ${clockGHz.toFixed(2)} GHz = ` +
    `${gflops.toFixed(1)} GFLOP/s (${(gflops / cores).toFixed(1)} per core) at the nominal clock (${nominalSource}); ` +
    "boost is not visible in a VM, so a kernel may exceed it";
  return { gflops, derivation };
}

interface Shape {
  label: string;
  m: number;
  n: number;
  k: number;
  transB: boolean;
}

function fill(length: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = ((i * 7919) % 1000) / 1000 - 0.5;
  return out;
}

interface Measurement {
  gflops: number;
  /** CPU time this process got per thread per wall second during the runs: below ~0.9, other processes took cores. */
  cpuShare: number;
  /** GFLOP per CPU-second of the whole process over all runs: the speed the kernel reaches when it gets a core. */
  perCpuSecond: number;
}

/** Best wall-clock GFLOP/s over repeated calls (at least 3, and at least ~0.6 s in all). */
function measure(name: KernelName, threads: number, shape: Shape): Measurement {
  const kernel = createKernel(name, { threads });
  try {
    const { m, n, k, transB } = shape;
    const a = fill(m * k);
    const b = fill(k * n);
    const c = new Float32Array(m * n);
    kernel.sgemm(false, transB, m, n, k, 1, a, b, 0, c); // warm-up: JIT, memory growth, worker start
    let best = Number.POSITIVE_INFINITY;
    let spent = 0;
    let runs = 0;
    const cpuStart = process.cpuUsage();
    for (; runs < 3 || (spent < 600 && runs < 50); runs++) {
      const start = performance.now();
      kernel.sgemm(false, transB, m, n, k, 1, a, b, 0, c);
      const elapsed = performance.now() - start;
      best = Math.min(best, elapsed);
      spent += elapsed;
    }
    const cpu = process.cpuUsage(cpuStart);
    const cpuShare = (cpu.user + cpu.system) / 1000 / spent / threads;
    return {
      gflops: (2 * m * n * k) / (best / 1000) / 1e9,
      cpuShare,
      perCpuSecond: (2 * m * n * k * runs) / ((cpu.user + cpu.system) / 1e6) / 1e9,
    };
  } finally {
    kernel.dispose();
  }
}

const peak = machinePeak();
console.log(`peak: ${peak.derivation}`);
console.log(`load average (1 min) at start: ${loadavg()[0]!.toFixed(2)} — other processes lower every figure below`);
for (const entry of availableKernels()) {
  console.log(`kernel ${entry.name}: ${entry.available ? "available" : `unavailable (${entry.reason})`}`);
}

const cube = (size: number): Shape => ({ label: `${size}³`, m: size, n: size, k: size, transB: false });
const lora: Shape = { label: "256×1376×512 (X·Wᵀ)", m: 256, n: 1376, k: 512, transB: true };
// OpenBLAS first: every other row is stated as a fraction of it (same shape and threads).
const plan: { name: KernelName; threads: number; shapes: Shape[] }[] = [
  { name: "blas", threads: 1, shapes: [cube(512), cube(1024), lora] },
  { name: "blas", threads: 2, shapes: [cube(512), cube(1024), lora] },
  { name: "wasm", threads: 1, shapes: [cube(512), cube(1024), lora] },
  { name: "wasm", threads: 2, shapes: [cube(512), cube(1024), lora] },
  { name: "ts", threads: 1, shapes: [cube(512)] },
];

const results = new Map<string, number>();
const perCpu = new Map<string, number>();
console.log("");
console.log("kernel  threads  shape                   GFLOP/s  of OpenBLAS  of peak           CPU share  GFLOP/CPU-s");
for (const { name, threads, shapes } of plan) {
  if (!availableKernels().find((entry) => entry.name === name)?.available) continue;
  for (const shape of shapes) {
    const { gflops, cpuShare, perCpuSecond } = measure(name, threads, shape);
    results.set(`${name}/${threads}/${shape.label}`, gflops);
    perCpu.set(`${name}/${threads}/${shape.label}`, perCpuSecond);
    // 1-thread figures are compared with one core's share of the peak.
    const share = (peak.gflops * Math.min(threads, availableParallelism())) / availableParallelism();
    const blas = results.get(`blas/${threads}/${shape.label}`);
    console.log(
      `${name.padEnd(6)}  ${String(threads).padStart(7)}  ${shape.label.padEnd(22)}  ${gflops.toFixed(1).padStart(7)}  ` +
        `${blas === undefined ? "n/a" : `${((100 * gflops) / blas).toFixed(0)}%`}`.padStart(11) +
        "  " +
        `${((100 * gflops) / share).toFixed(0).padStart(5)}% (of ${share.toFixed(0)})`.padEnd(18) +
        `${cpuShare.toFixed(2).padStart(9)}  ${perCpuSecond.toFixed(1).padStart(11)}`,
    );
  }
}

console.log(
  "CPU share: CPU seconds per thread per wall second (below ~0.9: other processes held the cores); GFLOP/CPU-s: " +
    "work per CPU second of the whole process, the speed per core when the kernel gets one. OpenBLAS threads spin " +
    "while waiting, so their CPU share reads high and their GFLOP/CPU-s low",
);
const ratio = (x: string, y: string) => {
  const a = results.get(x);
  const b = results.get(y);
  return a === undefined || b === undefined ? "n/a" : `${(a / b).toFixed(2)}×`;
};
console.log("");
console.log(`wasm vs ts, 1 thread, 512³:            ${ratio("wasm/1/512³", "ts/1/512³")}`);
console.log(`wasm 2 threads vs 1 thread, 1024³:     ${ratio("wasm/2/1024³", "wasm/1/1024³")}`);
console.log(`blas vs wasm, 2 threads, 1024³:        ${ratio("blas/2/1024³", "wasm/2/1024³")}`);
console.log(
  `wasm vs OpenBLAS (the practical ceiling), 2 threads, LoRA shape: ${ratio("wasm/2/256×1376×512 (X·Wᵀ)", "blas/2/256×1376×512 (X·Wᵀ)")}`,
);
// With a loaded machine the wall-clock figure says little; the projection is threads × GFLOP per CPU-second,
// what the kernel would do with its cores to itself (an estimate, printed as such).
const target = (label: string, key: string, threads: number, goal: number, goalText: string) => {
  const wall = results.get(key);
  const cpu = perCpu.get(key);
  if (wall === undefined || cpu === undefined) return;
  const projected = Math.min(threads, availableParallelism()) * cpu;
  console.log(
    `${label} ${goalText}: measured ${wall.toFixed(1)} GFLOP/s (${(wall / goal).toFixed(2)}× the target); ` +
      `projected with ${threads} idle cores ${projected.toFixed(1)} GFLOP/s (${(projected / goal).toFixed(2)}×)`,
  );
};
target("wasm 2 threads 1024³", "wasm/2/1024³", 2, 30, ">= 30 GFLOP/s");
target(
  "blas 2 threads 1024³",
  "blas/2/1024³",
  2,
  0.6 * peak.gflops,
  `>= 60% of the nominal-clock peak (${(0.6 * peak.gflops).toFixed(0)} GFLOP/s)`,
);
