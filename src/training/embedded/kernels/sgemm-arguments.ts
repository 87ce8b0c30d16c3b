import { KernelError } from "./kernel-error.js";

/** Throws a KernelError when the arrays are too small for the stated shapes (every kernel checks the same way). */
export function checkSgemmArguments(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
): void {
  for (const [label, value] of [
    ["m", m],
    ["n", n],
    ["k", k],
  ] as const) {
    if (!Number.isInteger(value) || value < 0) {
      throw new KernelError(`sgemm: ${label} must be a non-negative integer, got ${value}`);
    }
  }
  const shapeA = transA ? `${k}×${m} (transposed)` : `${m}×${k}`;
  const shapeB = transB ? `${n}×${k} (transposed)` : `${k}×${n}`;
  if (a.length < m * k) throw new KernelError(`sgemm: A must hold ${shapeA} = ${m * k} floats, got ${a.length}`);
  if (b.length < k * n) throw new KernelError(`sgemm: B must hold ${shapeB} = ${k * n} floats, got ${b.length}`);
  if (c.length < m * n) throw new KernelError(`sgemm: C must hold ${m}×${n} = ${m * n} floats, got ${c.length}`);
}
