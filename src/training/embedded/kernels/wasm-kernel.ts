/**
 * sgemm in WebAssembly SIMD (assembly/sgemm.ts, compiled by `npm run build`) across worker threads that share
 * one WebAssembly.Memory. The calling thread copies A, B (and C when beta ≠ 0) into the shared memory, posts the
 * call through an Int32Array (Atomics.notify), takes chunks of C from a shared counter like every worker does,
 * then Atomics.waits for the workers, so sgemm stays synchronous. Workers are unref'ed: an idle pool never keeps
 * the process alive. Below ~1M multiply-adds the call runs on the calling thread alone.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { MatmulKernel } from "./kernel.js";
import { KernelError } from "./kernel-error.js";
import { packageRoot } from "../../../package-root.js";
import { checkSgemmArguments } from "./sgemm-arguments.js";
import { type WasmMemory, type WasmModule, wasmApi } from "./wasm-api.js";
import { scaleC } from "./ts-kernel.js";

const PAGE = 65536;
/** Pages the shared memory may grow to (2 GiB); the module itself declares 4 GiB. */
const MAXIMUM_PAGES = 32768;
/** alloc() places arrays in the shared memory up to this many bytes, leaving the rest for each call's copies. */
const RESIDENT_LIMIT = (MAXIMUM_PAGES * PAGE) / 2;
/** Below this many multiply-adds the thread hand-off costs more than it saves: run on the calling thread. */
const PARALLEL_THRESHOLD = 1 << 20;
/** Micro-kernel tile (must match assembly/sgemm.ts): chunks of C are aligned to it. */
const MR = 5;
const NR = 8;
/** Chunks of C per thread (at most), handed out dynamically so a thread slowed by other processes does less. */
const CHUNKS_PER_THREAD = 4;
/** Columns (or rows) a chunk should at least have. */
const MIN_CHUNK = 256;

// control Int32Array layout: [0] generation, [1] stop flag, [2] next chunk to take, then per worker index >= 1:
// [1 + 2·index] done generation, [2 + 2·index] error flag.
const GENERATION = 0;
const STOP = 1;
const NEXT = 2;
const doneSlot = (worker: number) => 1 + worker * 2;
const errorSlot = (worker: number) => 2 + worker * 2;
// params Float64Array, one call's arguments shared by all threads:
// transA, transB, m, n, k, alpha, offA, offB, beta, offC, byColumns, tiles, chunks.
const PARAMS = 13;

interface SgemmExports {
  gemm(
    transA: number,
    transB: number,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: number,
    b: number,
    beta: number,
    c: number,
    i0: number,
    i1: number,
    j0: number,
    j1: number,
    scratch: number,
  ): void;
  scratchBytes(): number;
  heapBase(): number;
}

// Takes chunks of C (runs of whole micro-tiles, by columns or by rows) from the shared counter until none are
// left. The same code runs on the calling thread (runChunks below) and in every worker: dynamic hand-out keeps
// both cores busy when one of them is slowed by other processes. The result does not depend on which thread
// computes which chunk: every element sums over k in the same blocks and order.
const chunkLoopSource = `function runChunks(gemm, p, ctl, scratch) {
  const chunks = p[12], tiles = p[11], m = p[2], n = p[3];
  for (;;) {
    const chunk = Atomics.add(ctl, ${NEXT}, 1);
    if (chunk >= chunks) return;
    const t0 = Math.floor((tiles * chunk) / chunks), t1 = Math.floor((tiles * (chunk + 1)) / chunks);
    if (p[10] === 1) gemm(p[0], p[1], m, n, p[4], p[5], p[6], p[7], p[8], p[9], 0, m, t0 * ${NR}, Math.min(n, t1 * ${NR}), scratch);
    else gemm(p[0], p[1], m, n, p[4], p[5], p[6], p[7], p[8], p[9], t0 * ${MR}, Math.min(m, t1 * ${MR}), 0, n, scratch);
  }
}`;

// Runs in each worker (CommonJS source, started with eval: true so it works from src/ and dist/ alike).
const workerSource = `
const { workerData } = require("node:worker_threads");
const { module, memory, control, params, index, scratch } = workerData;
const { gemm } = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ctl = new Int32Array(control);
const p = new Float64Array(params);
${chunkLoopSource}
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${GENERATION}, seen);
  const generation = Atomics.load(ctl, ${GENERATION});
  if (Atomics.load(ctl, ${STOP}) !== 0) break;
  if (generation === seen) continue;
  seen = generation;
  try {
    runChunks(gemm, p, ctl, scratch);
    Atomics.store(ctl, 2 + index * 2, 0);
  } catch (error) {
    Atomics.store(ctl, 2 + index * 2, 1);
  }
  Atomics.store(ctl, 1 + index * 2, generation);
  Atomics.notify(ctl, 1 + index * 2);
}
`;

type ChunkRunner = (gemm: SgemmExports["gemm"], params: Float64Array, control: Int32Array, scratch: number) => void;
// The calling thread's copy of the chunk loop, compiled from the same source as the workers'.
const runChunks = new Function(`${chunkLoopSource}; return runChunks;`)() as ChunkRunner;

export type WasmLoadResult = { module: WasmModule; path: string } | { module: undefined; reason: string };

let loaded: WasmLoadResult | undefined;

/** Where `npm run build` puts the compiled kernel. */
export function wasmModulePath(): string {
  return join(packageRoot(), "dist", "training", "embedded", "kernels", "assembly", "sgemm.wasm");
}

/** Compiles the module once; never throws. */
export function loadWasmModule(): WasmLoadResult {
  loaded ??= probeWasmModule(wasmModulePath());
  return loaded;
}

/** Tries to compile a kernel file: the module, or why it cannot be used and how to fix that. Never throws. */
export function probeWasmModule(path: string): WasmLoadResult {
  if (!existsSync(path)) {
    return { module: undefined, reason: `${path} is missing: run \`npm run build\` to compile the WebAssembly kernel` };
  }
  try {
    return { module: new wasmApi.Module(readFileSync(path)), path };
  } catch (error) {
    return {
      module: undefined,
      reason: `${path} failed to compile: ${(error as Error).message}; rebuild it with \`npm run build\``,
    };
  }
}

export interface WasmKernelOptions {
  /** Threads including the calling one (default 1): threads - 1 workers are started. */
  threads?: number;
}

export class WasmKernel implements MatmulKernel {
  readonly name = "wasm" as const;
  readonly threads: number;
  private readonly memory: WasmMemory;
  private readonly exports: SgemmExports;
  private readonly control: Int32Array;
  private readonly params: Float64Array;
  private readonly workers: Worker[] = [];
  private readonly scratchBase: number;
  private readonly scratchBytes: number;
  private heap: Float32Array<ArrayBufferLike> = new Float32Array(0);
  /** First free byte after the arrays handed out by alloc(); each call's copied matrices go after it. */
  private residentEnd: number;
  /** The SharedArrayBuffer objects (one per memory size) that alloc()'s arrays view. */
  private readonly residentBuffers = new WeakSet<ArrayBufferLike>();
  private generation = 0;
  private disposed = false;

  constructor(options: WasmKernelOptions = {}) {
    const result = loadWasmModule();
    if (result.module === undefined) throw new KernelError(`wasm kernel unavailable: ${result.reason}`);
    this.threads = Math.max(1, Math.floor(options.threads ?? 1));
    this.memory = new wasmApi.Memory({ initial: 1, maximum: MAXIMUM_PAGES, shared: true });
    const instance = new wasmApi.Instance(result.module, { env: { memory: this.memory } });
    this.exports = instance.exports as unknown as SgemmExports;
    this.scratchBase = this.exports.heapBase();
    this.scratchBytes = align(this.exports.scratchBytes());
    this.residentEnd = this.scratchBase + this.threads * this.scratchBytes;
    this.ensureBytes(this.residentEnd);
    const controlBuffer = new SharedArrayBuffer(4 * (3 + 2 * this.threads));
    const paramsBuffer = new SharedArrayBuffer(8 * PARAMS);
    this.control = new Int32Array(controlBuffer);
    this.params = new Float64Array(paramsBuffer);
    for (let index = 1; index < this.threads; index++) {
      const worker = new Worker(workerSource, {
        eval: true,
        workerData: {
          module: result.module,
          memory: this.memory,
          control: controlBuffer,
          params: paramsBuffer,
          index,
          scratch: this.scratchAt(index),
        },
      });
      worker.unref();
      this.workers.push(worker);
    }
  }

  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    b: Float32Array,
    beta: number,
    c: Float32Array,
  ): void {
    if (this.disposed) throw new KernelError("wasm kernel: sgemm called after dispose()");
    checkSgemmArguments(transA, transB, m, n, k, a, b, c);
    if (m === 0 || n === 0) return;
    if (k === 0 || alpha === 0) {
      scaleC(c, m * n, beta);
      return;
    }
    // Arrays from alloc() are used in place; the others are copied after them, each 64-byte aligned.
    const residentA = this.residentBuffers.has(a.buffer);
    const residentB = this.residentBuffers.has(b.buffer);
    const residentC = this.residentBuffers.has(c.buffer);
    let end = this.residentEnd;
    const place = (resident: boolean, array: Float32Array, floats: number) => {
      if (resident) return array.byteOffset;
      const at = end;
      end += align(floats * 4);
      return at;
    };
    const offA = place(residentA, a, m * k);
    const offB = place(residentB, b, k * n);
    const offC = place(residentC, c, m * n);
    this.ensureBytes(end);
    const heap = this.heap;
    if (!residentA) heap.set(a.length === m * k ? a : a.subarray(0, m * k), offA >> 2);
    if (!residentB) heap.set(b.length === k * n ? b : b.subarray(0, k * n), offB >> 2);
    if (!residentC && beta !== 0) heap.set(c.length === m * n ? c : c.subarray(0, m * n), offC >> 2);

    // Split C by columns when it is wide, else by rows, into chunks of whole micro-tiles.
    const byColumns = Math.ceil(n / NR) >= Math.ceil(m / MR);
    const tiles = byColumns ? Math.ceil(n / NR) : Math.ceil(m / MR);
    const parallel = this.threads > 1 && m * n * k >= PARALLEL_THRESHOLD && tiles > 1;
    // Every chunk packs all of op(A) (column chunks) or op(B) (row chunks) again, so chunks stay at least
    // MIN_CHUNK wide, where packing costs a few percent of the chunk's arithmetic.
    const fewest = Math.floor(tiles / Math.ceil(MIN_CHUNK / (byColumns ? NR : MR)));
    const chunks = parallel
      ? Math.min(tiles, Math.max(this.threads, Math.min(this.threads * CHUNKS_PER_THREAD, fewest)))
      : 1;
    this.params.set([+transA, +transB, m, n, k, alpha, offA, offB, beta, offC, byColumns ? 1 : 0, tiles, chunks]);
    Atomics.store(this.control, NEXT, 0);
    const generation = parallel ? ++this.generation : this.generation;
    if (parallel) {
      Atomics.store(this.control, GENERATION, generation);
      Atomics.notify(this.control, GENERATION);
    }
    let failure: unknown;
    try {
      runChunks(this.exports.gemm, this.params, this.control, this.scratchAt(0));
    } catch (error) {
      failure = error;
    }
    for (let index = 1; parallel && index < this.threads; index++) {
      const slot = doneSlot(index);
      for (;;) {
        const done = Atomics.load(this.control, slot);
        if (done === generation) break;
        Atomics.wait(this.control, slot, done);
      }
      if (Atomics.load(this.control, errorSlot(index)) !== 0) failure ??= new Error(`worker ${index} failed`);
    }
    if (failure !== undefined) throw new KernelError("wasm kernel: sgemm failed", { cause: failure });
    if (!residentC) c.set(heap.subarray(offC >> 2, (offC >> 2) + m * n));
  }

  alloc(length: number): Float32Array {
    if (!Number.isInteger(length) || length < 0) {
      throw new KernelError(`wasm kernel: alloc needs a non-negative integer length, got ${length}`);
    }
    const offset = this.residentEnd;
    // Past the limit a plain array still works: sgemm copies it in, as it does any array.
    if (offset + align(length * 4) > RESIDENT_LIMIT) return new Float32Array(length);
    this.ensureBytes(offset + align(length * 4));
    this.residentEnd = offset + align(length * 4);
    const buffer = this.memory.buffer;
    this.residentBuffers.add(buffer);
    // Fresh memory is zero, but a region may have held an earlier call's copied matrices.
    return new Float32Array(buffer, offset, length).fill(0);
  }

  private scratchAt(index: number): number {
    return this.scratchBase + index * this.scratchBytes;
  }

  private ensureBytes(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) {
      const pages = Math.ceil((bytes - have) / PAGE);
      if (have / PAGE + pages > MAXIMUM_PAGES) {
        throw new KernelError(
          `wasm kernel: the matrices need ${bytes} bytes, more than the ${MAXIMUM_PAGES * PAGE} bytes of shared memory`,
        );
      }
      this.memory.grow(pages);
    }
    if (this.heap.buffer.byteLength !== this.memory.buffer.byteLength) {
      this.heap = new Float32Array(this.memory.buffer);
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    Atomics.store(this.control, STOP, 1);
    Atomics.add(this.control, GENERATION, 1);
    Atomics.notify(this.control, GENERATION);
    for (const worker of this.workers) void worker.terminate();
    this.workers.length = 0;
  }
}

function align(bytes: number): number {
  return Math.ceil(bytes / 64) * 64;
}
