/**
 * Kernel registry: `createKernel('auto')` picks the fastest path that works here — the native OpenBLAS addon
 * when it was built, else WebAssembly SIMD on worker threads, else pure TypeScript.
 */
import { availableParallelism } from "node:os";
import { BlasKernel, loadBlasAddon } from "./blas-kernel.js";
import { type KernelName, kernelNames, type MatmulKernel } from "./kernel.js";
import { KernelError } from "./kernel-error.js";
import { TsKernel } from "./ts-kernel.js";
import { loadWasmModule, WasmKernel } from "./wasm-kernel.js";

export type { KernelName, MatmulKernel } from "./kernel.js";
export { kernelNames } from "./kernel.js";
export { KernelError } from "./kernel-error.js";

export interface CreateKernelOptions {
  /** Threads for `wasm` and `blas` (default: the machine's available parallelism); `ts` always uses 1. */
  threads?: number;
}

export interface KernelAvailability {
  name: KernelName;
  available: boolean;
  /** Why the kernel cannot be used here, and how to fix it. */
  reason?: string;
}

/** Which kernels can be created on this machine, in the order `auto` tries them (fastest first). */
export function availableKernels(): KernelAvailability[] {
  const blas = loadBlasAddon();
  const wasm = loadWasmModule();
  return [
    blas.addon === undefined
      ? { name: "blas", available: false, reason: blas.reason }
      : { name: "blas", available: true },
    wasm.module === undefined
      ? { name: "wasm", available: false, reason: wasm.reason }
      : { name: "wasm", available: true },
    { name: "ts", available: true },
  ];
}

/** Creates a matmul kernel; `auto` (the default) picks blas, else wasm, else ts. Throws KernelError when a named kernel is unavailable. */
export function createKernel(name: KernelName | "auto" = "auto", options: CreateKernelOptions = {}): MatmulKernel {
  const threads = Math.max(1, Math.floor(options.threads ?? availableParallelism()));
  if (name === "auto") {
    const first = availableKernels().find((kernel) => kernel.available);
    return createKernel(first?.name ?? "ts", { threads });
  }
  switch (name) {
    case "ts":
      return new TsKernel();
    case "wasm":
      return new WasmKernel({ threads });
    case "blas":
      return new BlasKernel({ threads });
    default:
      throw new KernelError(`unknown kernel "${name as string}": expected one of ${kernelNames.join(", ")} or auto`);
  }
}
