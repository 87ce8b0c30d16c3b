/**
 * The small interface behind which every hot loop of the embedded trainer runs. Implementations:
 * `ts` (pure TypeScript, for correctness tests), `wasm` (WebAssembly SIMD on worker threads, the default),
 * `blas` (optional native OpenBLAS addon, used only when it builds).
 */
export const kernelNames = ["ts", "wasm", "blas"] as const;
export type KernelName = (typeof kernelNames)[number];

export interface MatmulKernel {
  readonly name: KernelName;
  /** Threads this kernel uses. */
  readonly threads: number;
  /**
   * C = alpha * op(A) · op(B) + beta * C, all row-major Float32Array.
   * op(A) is m×k (A is m×k, or k×m when transA), op(B) is k×n (B is k×n, or n×k when transB); C is m×n.
   * Synchronous: worker-thread kernels block the caller with Atomics.wait until the result is in `c`.
   */
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
  ): void;
  /**
   * A zero-filled Float32Array that this kernel reads and writes without copying (for `wasm`: a view into the
   * shared WebAssembly memory, so sgemm skips copying it in and out; for `ts`/`blas`: a plain array). Use it for
   * arrays that take part in many calls, above all the frozen weights; `wasm` hands out plain arrays once half its
   * memory is placed. Never freed before the kernel is garbage-collected; the array stays valid (as ordinary
   * memory) after dispose().
   */
  alloc(length: number): Float32Array;
  /** Stop worker threads. */
  dispose(): void;
}
