/**
 * sgemm through the optional native addon (native/blas.c, N-API over the system OpenBLAS, or Accelerate on macOS). Built by
 * `node scripts/build-native.mjs`; when it did not build, `loadBlasAddon()` says why and callers fall back.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { MatmulKernel } from "./kernel.js";
import { KernelError } from "./kernel-error.js";
import { packageRoot } from "../../../package-root.js";
import { checkSgemmArguments } from "./sgemm-arguments.js";

interface BlasAddon {
  /** Same contract as MatmulKernel.sgemm; the arguments are checked before the call. */
  sgemm: MatmulKernel["sgemm"];
  setThreads(threads: number): void;
  getThreads(): number;
}

export type BlasLoadResult = { addon: BlasAddon; path: string } | { addon: undefined; reason: string };

let loaded: BlasLoadResult | undefined;

/** The path the addon is loaded from. */
export function blasAddonPath(): string {
  return join(packageRoot(), "native", "build", "Release", "blas.node");
}

/** Loads the addon once; never throws. */
export function loadBlasAddon(): BlasLoadResult {
  loaded ??= probeBlasAddon(blasAddonPath());
  return loaded;
}

/** Tries to load an addon file: the addon, or why it cannot be used and how to fix that. Never throws. */
export function probeBlasAddon(path: string): BlasLoadResult {
  if (!existsSync(path)) {
    return {
      addon: undefined,
      reason: `native addon not built (${path} is missing): ${process.platform === "darwin" ? "install the Xcode command line tools (Accelerate)" : "install libopenblas-dev"} and run \`node scripts/build-native.mjs\``,
    };
  }
  try {
    const addon = createRequire(import.meta.url)(path) as BlasAddon;
    if (typeof addon.sgemm !== "function") throw new Error("the addon exports no sgemm function");
    return { addon, path };
  } catch (error) {
    return {
      addon: undefined,
      reason: `native addon ${path} failed to load: ${(error as Error).message}; rebuild it with \`node scripts/build-native.mjs\``,
    };
  }
}

export class BlasKernel implements MatmulKernel {
  readonly name = "blas" as const;
  readonly threads: number;
  private readonly addon: BlasAddon;

  constructor(options: { threads?: number } = {}) {
    const result = loadBlasAddon();
    if (result.addon === undefined) throw new KernelError(`blas kernel unavailable: ${result.reason}`);
    this.addon = result.addon;
    this.threads = Math.max(1, Math.floor(options.threads ?? 1));
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
    checkSgemmArguments(transA, transB, m, n, k, a, b, c);
    if (m === 0 || n === 0) return;
    // OpenBLAS's thread count is process-wide; set it per call so kernels with different counts can coexist.
    if (this.addon.getThreads() !== this.threads) this.addon.setThreads(this.threads);
    this.addon.sgemm(transA, transB, m, n, k, alpha, a, b, beta, c);
  }

  alloc(length: number): Float32Array {
    return new Float32Array(length);
  }

  dispose(): void {}
}
