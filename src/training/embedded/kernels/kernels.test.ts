import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { availableKernels, createKernel, KernelError, type MatmulKernel } from "./index.js";
import { probeBlasAddon } from "./blas-kernel.js";
import { packageRoot } from "../../../package-root.js";
import { probeWasmModule, wasmModulePath } from "./wasm-kernel.js";

// The WebAssembly kernel is compiled by `npm run build`; compile it here too when vitest runs alone.
beforeAll(() => {
  if (!existsSync(wasmModulePath())) {
    execFileSync(process.execPath, ["scripts/build-wasm.mjs"], { cwd: packageRoot(), stdio: "inherit" });
  }
});

function random(length: number, seed: number): Float32Array {
  // Small deterministic LCG: reproducible failures without fast-check's shrinking on large arrays.
  let state = seed >>> 0 || 1;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 32 - 0.5;
  }
  return out;
}

interface Case {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  alpha: number;
  beta: number;
  seed: number;
}

/** Float64 naive reference, and per element the magnitude bound sum |alpha·a·b| + |beta·c| for the tolerance. */
function reference({ transA, transB, m, n, k, alpha, beta }: Case, a: Float32Array, b: Float32Array, c: Float32Array) {
  const value = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      let magnitude = 0;
      for (let p = 0; p < k; p++) {
        const x = transA ? a[p * m + i]! : a[i * k + p]!;
        const y = transB ? b[j * k + p]! : b[p * n + j]!;
        sum += x * y;
        magnitude += Math.abs(x * y);
      }
      const old = beta === 0 ? 0 : beta * c[i * n + j]!;
      value[i * n + j] = alpha * sum + old;
      scale[i * n + j] = Math.abs(alpha) * magnitude + Math.abs(old);
    }
  }
  return { value, scale };
}

/** Runs one case on the kernel; returns the worst error relative to the element's magnitude bound. */
function worstError(kernel: MatmulKernel, testCase: Case): number {
  const { transA, transB, m, n, k, alpha, beta, seed } = testCase;
  const a = random(m * k, seed);
  const b = random(k * n, seed + 1);
  const c = beta === 0 ? new Float32Array(m * n).fill(Number.NaN) : random(m * n, seed + 2);
  const { value, scale } = reference(testCase, a, b, c);
  kernel.sgemm(transA, transB, m, n, k, alpha, a, b, beta, c);
  let worst = 0;
  for (let i = 0; i < m * n; i++) {
    const error = Math.abs(c[i]! - value[i]!) / (scale[i]! + 1e-30);
    worst = Number.isNaN(error) ? Number.POSITIVE_INFINITY : Math.max(worst, error);
  }
  return worst;
}

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [33, 65, 17],
  [4, 8, 256],
  [5, 9, 257],
  [130, 70, 300],
];
const scalars: [number, number][] = [
  [1, 0],
  [0.5, 1],
  [-1.5, 0.25],
];
const booleans = [false, true];

const fixedCases: Case[] = shapes.flatMap(([m, n, k], s) =>
  booleans.flatMap((transA) =>
    booleans.flatMap((transB) =>
      scalars.map(([alpha, beta]) => ({ transA, transB, m, n, k, alpha, beta, seed: 17 * s + 1 })),
    ),
  ),
);

// float32 accumulation over k <= 300 terms: relative to sum |a·b| the error stays far below 1e-5.
const TOLERANCE = 1e-5;
const blas = availableKernels().find((kernel) => kernel.name === "blas")!;

const kernelsUnderTest: { label: string; create: () => MatmulKernel }[] = [
  { label: "ts", create: () => createKernel("ts") },
  { label: "wasm, 1 thread", create: () => createKernel("wasm", { threads: 1 }) },
  { label: "wasm, 2 threads", create: () => createKernel("wasm", { threads: 2 }) },
  { label: "wasm, 3 threads", create: () => createKernel("wasm", { threads: 3 }) },
  ...(blas.available
    ? [
        { label: "blas, 1 thread", create: () => createKernel("blas", { threads: 1 }) },
        { label: "blas, 2 threads", create: () => createKernel("blas", { threads: 2 }) },
      ]
    : []),
];

describe.each(kernelsUnderTest)("sgemm ($label) against a float64 reference", ({ create }) => {
  let kernel: MatmulKernel;
  beforeAll(() => {
    kernel = create();
  });
  afterAll(() => kernel.dispose());

  it.each(fixedCases)("transA=$transA transB=$transB $m×$n×$k alpha=$alpha beta=$beta", (testCase) => {
    expect(worstError(kernel, testCase)).toBeLessThan(TOLERANCE);
  });

  it("agrees on random shapes, transposes and scalars (property)", () => {
    fc.assert(
      fc.property(
        fc.record({
          transA: fc.boolean(),
          transB: fc.boolean(),
          m: fc.integer({ min: 1, max: 40 }),
          n: fc.integer({ min: 1, max: 40 }),
          k: fc.integer({ min: 1, max: 40 }),
          alpha: fc.constantFrom(1, -0.75, 2),
          beta: fc.constantFrom(0, 1, 0.5),
          seed: fc.integer({ min: 1, max: 1 << 30 }),
        }),
        (testCase) => worstError(kernel, testCase) < TOLERANCE,
      ),
      { numRuns: 60 },
    );
  });

  it("with k = 0 computes C = beta·C, and beta = 0 clears C", () => {
    const c = new Float32Array([1, 2, 3, 4, 5, 6]);
    kernel.sgemm(false, false, 2, 3, 0, 1, new Float32Array(0), new Float32Array(0), 0.5, c);
    expect([...c]).toEqual([0.5, 1, 1.5, 2, 2.5, 3]);
    kernel.sgemm(false, false, 2, 3, 0, 1, new Float32Array(0), new Float32Array(0), 0, c);
    expect([...c]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it("rejects arrays too small for the shapes with a KernelError", () => {
    const call = () =>
      kernel.sgemm(false, false, 2, 2, 2, 1, new Float32Array(3), new Float32Array(4), 0, new Float32Array(4));
    expect(call).toThrow(KernelError);
    expect(call).toThrow(/A must hold 2×2 = 4 floats, got 3/);
  });
});

describe("wasm kernel threads", () => {
  it("gives bit-identical results with 1, 2 and 3 threads on shapes that are split across threads", () => {
    const kernels = [1, 2, 3].map((threads) => createKernel("wasm", { threads }));
    try {
      for (const [m, n, k, transA, transB] of [
        [150, 260, 300, false, false],
        [300, 90, 200, true, false],
        [97, 301, 129, false, true],
        [260, 260, 64, true, true],
        // Wide and tall enough for more chunks than threads (each thread takes several from the counter).
        [64, 2048, 40, false, true],
        [1500, 16, 64, true, false],
      ] as const) {
        const a = random(m * k, m);
        const b = random(k * n, n);
        const c0 = random(m * n, k);
        const results = kernels.map((kernel) => {
          const c = c0.slice();
          kernel.sgemm(transA, transB, m, n, k, 0.5, a, b, 0.25, c);
          return c;
        });
        expect(results[1]).toEqual(results[0]);
        expect(results[2]).toEqual(results[0]);
        // And not trivially: the result differs from the input C.
        expect(results[0]).not.toEqual(c0);
      }
    } finally {
      for (const kernel of kernels) kernel.dispose();
    }
  });

  it("grows its shared memory for large matrices and still handles small ones afterwards", () => {
    const kernel = createKernel("wasm", { threads: 2 });
    try {
      const testCase = { transA: false, transB: true, m: 600, n: 520, k: 700, alpha: 1, beta: 0, seed: 5 };
      const big = worstError(kernel, testCase);
      expect(big).toBeLessThan(TOLERANCE);
      expect(worstError(kernel, { ...testCase, m: 3, n: 5, k: 2 })).toBeLessThan(TOLERANCE);
    } finally {
      kernel.dispose();
    }
  });

  it("uses arrays from alloc() in place, before and after the memory grows, and equals the copying path", () => {
    const kernel = createKernel("wasm", { threads: 2 });
    try {
      const [m, n, k] = [120, 200, 150];
      const a = kernel.alloc(m * k);
      const w = kernel.alloc(n * k);
      expect(a.every((value) => value === 0)).toBe(true);
      // In place means a view into the kernel's shared WebAssembly memory, not a plain array that sgemm copies.
      expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
      a.set(random(m * k, 1));
      w.set(random(n * k, 2));
      const expected = random(m * n, 3);
      const plainC = expected.slice();
      kernel.sgemm(false, true, m, n, k, 0.5, a.slice(), w.slice(), 0.25, plainC);
      const c = kernel.alloc(m * n);
      c.set(expected);
      kernel.sgemm(false, true, m, n, k, 0.5, a, w, 0.25, c);
      expect(c).toEqual(plainC);
      // A large allocation grows the shared memory; earlier arrays keep their contents and still work in place.
      const big = kernel.alloc(8_000_000);
      big[big.length - 1] = 7;
      c.set(expected);
      kernel.sgemm(false, true, m, n, k, 0.5, a, w.subarray(0), 0.25, c);
      expect(c).toEqual(plainC);
      expect(big[big.length - 1]).toBe(7);
      // Mixed: resident A, plain B and C.
      const mixedC = expected.slice();
      kernel.sgemm(false, true, m, n, k, 0.5, a, w.slice(), 0.25, mixedC);
      expect(mixedC).toEqual(plainC);
    } finally {
      kernel.dispose();
    }
  });

  it("alloc() of the ts (and, where built, blas) kernel gives plain zeroed arrays", () => {
    for (const name of blas.available ? (["ts", "blas"] as const) : (["ts"] as const)) {
      const kernel = createKernel(name, { threads: 1 });
      const array = kernel.alloc(5);
      expect(array).toEqual(new Float32Array(5));
      expect(array.buffer).toBeInstanceOf(ArrayBuffer);
      kernel.dispose();
    }
  });

  it("refuses to run after dispose()", () => {
    const kernel = createKernel("wasm", { threads: 2 });
    kernel.dispose();
    expect(() =>
      kernel.sgemm(false, false, 1, 1, 1, 1, new Float32Array(1), new Float32Array(1), 0, new Float32Array(1)),
    ).toThrow(/after dispose/);
  });
});

describe("kernel registry", () => {
  it("lists every kernel, with a reason for each one that is unavailable", () => {
    const list = availableKernels();
    expect(list.map((kernel) => kernel.name)).toEqual(["blas", "wasm", "ts"]);
    for (const kernel of list) {
      if (kernel.available) expect(kernel.reason).toBeUndefined();
      else expect(kernel.reason).toMatch(/build|libopenblas|failed/);
    }
    expect(list.find((kernel) => kernel.name === "wasm")?.available).toBe(true);
  });

  it("'auto' creates the first available kernel", () => {
    const kernel = createKernel("auto", { threads: 1 });
    try {
      expect(kernel.name).toBe(availableKernels().find((entry) => entry.available)!.name);
      expect(kernel.threads).toBe(1);
    } finally {
      kernel.dispose();
    }
  });

  if (blas.available) {
    it("the native kernel agrees with the wasm kernel (blas is built here)", () => {
      const native = createKernel("blas", { threads: 2 });
      const wasm = createKernel("wasm", { threads: 2 });
      try {
        const a = random(200 * 300, 1);
        const b = random(300 * 150, 2);
        const fromNative = new Float32Array(200 * 150);
        const fromWasm = new Float32Array(200 * 150);
        native.sgemm(false, false, 200, 150, 300, 1, a, b, 0, fromNative);
        wasm.sgemm(false, false, 200, 150, 300, 1, a, b, 0, fromWasm);
        for (let i = 0; i < fromNative.length; i++) expect(Math.abs(fromNative[i]! - fromWasm[i]!)).toBeLessThan(1e-4);
      } finally {
        native.dispose();
        wasm.dispose();
      }
    });
  } else {
    it("the native kernel is unavailable here, and creating it says why and how to build it", () => {
      expect(blas.reason).toMatch(/libopenblas-dev|build-native|failed to load/);
      expect(() => createKernel("blas")).toThrow(KernelError);
      expect(() => createKernel("blas")).toThrow(/blas kernel unavailable/);
    });
  }
});

describe("unavailable kernels say why and how to fix it (whatever this machine has)", () => {
  const dir = mkdtempSync(join(tmpdir(), "selfalign-kernels-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a missing or broken native addon", () => {
    const missing = probeBlasAddon(join(dir, "blas.node"));
    expect(missing.addon).toBeUndefined();
    expect("reason" in missing && missing.reason).toMatch(/not built .*libopenblas-dev.*build-native/);
    writeFileSync(join(dir, "broken.node"), "not a shared object");
    const broken = probeBlasAddon(join(dir, "broken.node"));
    expect(broken.addon).toBeUndefined();
    expect("reason" in broken && broken.reason).toMatch(/failed to load/);
  });

  it("a missing or corrupt WebAssembly kernel", () => {
    const missing = probeWasmModule(join(dir, "sgemm.wasm"));
    expect(missing.module).toBeUndefined();
    expect("reason" in missing && missing.reason).toMatch(/missing: run `npm run build`/);
    writeFileSync(join(dir, "corrupt.wasm"), new Uint8Array([0, 97, 115, 109, 9, 9, 9, 9]));
    const corrupt = probeWasmModule(join(dir, "corrupt.wasm"));
    expect(corrupt.module).toBeUndefined();
    expect("reason" in corrupt && corrupt.reason).toMatch(/failed to compile/);
  });
});
