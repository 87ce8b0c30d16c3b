/** Float32 training precision: arrays are Float32Array and every matmul runs on a MatmulKernel. */
import type { MatmulKernel } from "./kernels/kernel.js";
import type { Precision } from "./ops.js";

export function kernelPrecision(kernel: MatmulKernel): Precision {
  return {
    name: "f32",
    alloc: (n) => new Float32Array(n),
    gemm: (transA, transB, m, n, k, alpha, a, b, beta, c) =>
      kernel.sgemm(transA, transB, m, n, k, alpha, a as Float32Array, b as Float32Array, beta, c as Float32Array),
  };
}
