/**
 * Pure-TypeScript sgemm: the reference path for correctness tests and the last-resort fallback.
 * A 4×4 register-blocked micro-kernel over packed panels of op(A) (4 rows) and op(B) (4 columns),
 * with the k dimension blocked so one B block stays in cache while every A panel streams past it.
 */
import type { MatmulKernel } from "./kernel.js";
import { checkSgemmArguments } from "./sgemm-arguments.js";

const KC = 256;
const MR = 4;
const NR = 4;

/** Packs op(B)[p0:p0+kc, 0:n] into column panels of NR: panel j holds kc rows of NR contiguous values. */
function packB(
  transB: boolean,
  b: Float32Array,
  n: number,
  k: number,
  p0: number,
  kc: number,
  out: Float32Array,
): void {
  const panels = Math.ceil(n / NR);
  for (let jp = 0; jp < panels; jp++) {
    const j0 = jp * NR;
    const width = Math.min(NR, n - j0);
    let o = jp * kc * NR;
    for (let p = 0; p < kc; p++) {
      const row = p0 + p;
      for (let jj = 0; jj < NR; jj++) {
        // op(B)[row][j] is b[row*n + j], or b[j*k + row] when B is stored transposed (n×k).
        out[o++] = jj < width ? (transB ? b[(j0 + jj) * k + row]! : b[row * n + j0 + jj]!) : 0;
      }
    }
  }
}

/** Packs op(A)[i0:i0+MR, p0:p0+kc] into MR-interleaved form: for each p, MR contiguous values. */
function packA(
  transA: boolean,
  a: Float32Array,
  m: number,
  k: number,
  i0: number,
  p0: number,
  kc: number,
  out: Float32Array,
): void {
  const height = Math.min(MR, m - i0);
  let o = 0;
  for (let p = 0; p < kc; p++) {
    const col = p0 + p;
    for (let ii = 0; ii < MR; ii++) {
      out[o++] = ii < height ? (transA ? a[col * m + i0 + ii]! : a[(i0 + ii) * k + col]!) : 0;
    }
  }
}

export class TsKernel implements MatmulKernel {
  readonly name = "ts" as const;
  readonly threads = 1;
  private packedA = new Float32Array(MR * KC);
  private packedB = new Float32Array(0);

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
    if (k === 0 || alpha === 0) {
      scaleC(c, m * n, beta);
      return;
    }
    const panels = Math.ceil(n / NR);
    const needB = panels * NR * Math.min(KC, k);
    if (this.packedB.length < needB) this.packedB = new Float32Array(needB);
    const pa = this.packedA;
    const pb = this.packedB;
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = Math.min(KC, k - p0);
      // The first k block applies beta; later blocks accumulate onto what is already in C.
      const betaBlock = p0 === 0 ? beta : 1;
      packB(transB, b, n, k, p0, kc, pb);
      for (let i0 = 0; i0 < m; i0 += MR) {
        packA(transA, a, m, k, i0, p0, kc, pa);
        const height = Math.min(MR, m - i0);
        for (let jp = 0; jp < panels; jp++) {
          const j0 = jp * NR;
          const width = Math.min(NR, n - j0);
          let c00 = 0,
            c01 = 0,
            c02 = 0,
            c03 = 0;
          let c10 = 0,
            c11 = 0,
            c12 = 0,
            c13 = 0;
          let c20 = 0,
            c21 = 0,
            c22 = 0,
            c23 = 0;
          let c30 = 0,
            c31 = 0,
            c32 = 0,
            c33 = 0;
          let ao = 0;
          let bo = jp * kc * NR;
          for (let p = 0; p < kc; p++) {
            const a0 = pa[ao]!,
              a1 = pa[ao + 1]!,
              a2 = pa[ao + 2]!,
              a3 = pa[ao + 3]!;
            const b0 = pb[bo]!,
              b1 = pb[bo + 1]!,
              b2 = pb[bo + 2]!,
              b3 = pb[bo + 3]!;
            c00 += a0 * b0;
            c01 += a0 * b1;
            c02 += a0 * b2;
            c03 += a0 * b3;
            c10 += a1 * b0;
            c11 += a1 * b1;
            c12 += a1 * b2;
            c13 += a1 * b3;
            c20 += a2 * b0;
            c21 += a2 * b1;
            c22 += a2 * b2;
            c23 += a2 * b3;
            c30 += a3 * b0;
            c31 += a3 * b1;
            c32 += a3 * b2;
            c33 += a3 * b3;
            ao += MR;
            bo += NR;
          }
          const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
          for (let ii = 0; ii < height; ii++) {
            const row = (i0 + ii) * n + j0;
            for (let jj = 0; jj < width; jj++) {
              const v = alpha * tile[ii * NR + jj]!;
              // beta = 0 must ignore C entirely (BLAS semantics: NaN or garbage in C is overwritten).
              c[row + jj] = betaBlock === 0 ? v : v + betaBlock * c[row + jj]!;
            }
          }
        }
      }
    }
  }

  alloc(length: number): Float32Array {
    return new Float32Array(length);
  }

  dispose(): void {
    this.packedB = new Float32Array(0);
  }
}

/** C = beta * C over the first `size` entries (beta = 0 clears C). */
export function scaleC(c: Float32Array, size: number, beta: number): void {
  if (beta === 1) return;
  if (beta === 0) c.fill(0, 0, size);
  else for (let i = 0; i < size; i++) c[i] = beta * c[i]!;
}
