// sgemm in AssemblyScript with WebAssembly SIMD (f32x4), compiled at build time to dist/.../sgemm.wasm.
// The memory is imported and shared: every worker thread instantiates this module over the same memory and
// computes its own block of C (rows i0..i1, columns j0..j1). BLIS-style loop nest: B blocks of KC×NC and A
// blocks of MC×KC are packed into the caller-provided scratch area, then a 5×8 register-blocked micro-kernel
// runs over the packed panels. Why 5×8: V8 gives wasm 15 xmm registers on x64; 5×8 needs 10 f32x4 accumulators
// + 2 B vectors + 1 broadcast A value + 1 product = 14, so nothing spills. Measured on Zen 4, one thread,
// 512³, per CPU-second: 4×8 35 GFLOP/s, 5×8 40, 6×8 26 (spills), 4×8 unrolled ×2 26 (spills). KC/MC/NC barely matter.
// The k loop is not unrolled for the same reason.
// All pointers are byte offsets into the shared memory; matrices are row-major with no padding.

// @ts-nocheck  (AssemblyScript types: i32, f32, usize, v128)

const MR: i32 = 5;
const NR: i32 = 8;
const KC: i32 = 256;
const MC: i32 = 120;
const NC: i32 = 1024;

/** Bytes of scratch one thread needs: packed A block, packed B block, and one MR×NR edge tile. */
export function scratchBytes(): i32 {
  return (MC * KC + KC * NC + MR * NR) * 4;
}

/** First byte the host may use (after this module's static data), 64-byte aligned. */
export function heapBase(): usize {
  return (__heap_base + 63) & ~(<usize>63);
}

// Packs op(B)[pc:pc+kc, jc:jc+nc] into NR-wide column panels (kc rows of NR floats each), zero-padded.
function packB(transB: i32, b: usize, ldb: i32, pc: i32, kc: i32, jc: i32, nc: i32, out: usize): void {
  for (let jr: i32 = 0; jr < nc; jr += NR) {
    const width = min(NR, nc - jr);
    const panel = out + <usize>(jr * kc) * 4;
    if (transB) {
      // op(B)[p][j] = B[j][p]: read each stored row contiguously, scatter with stride NR.
      for (let jj: i32 = 0; jj < NR; jj++) {
        if (jj < width) {
          const src = b + (<usize>(jc + jr + jj) * <usize>ldb + <usize>pc) * 4;
          for (let p: i32 = 0; p < kc; p++) {
            store<f32>(panel + <usize>(p * NR + jj) * 4, load<f32>(src + <usize>p * 4));
          }
        } else {
          for (let p: i32 = 0; p < kc; p++) store<f32>(panel + <usize>(p * NR + jj) * 4, 0);
        }
      }
    } else if (width == NR) {
      for (let p: i32 = 0; p < kc; p++) {
        const src = b + (<usize>(pc + p) * <usize>ldb + <usize>(jc + jr)) * 4;
        const dst = panel + <usize>(p * NR) * 4;
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
      }
    } else {
      for (let p: i32 = 0; p < kc; p++) {
        const src = b + (<usize>(pc + p) * <usize>ldb + <usize>(jc + jr)) * 4;
        const dst = panel + <usize>(p * NR) * 4;
        for (let jj: i32 = 0; jj < NR; jj++) {
          store<f32>(dst + <usize>jj * 4, jj < width ? load<f32>(src + <usize>jj * 4) : 0);
        }
      }
    }
  }
}

// Packs op(A)[ic:ic+mc, pc:pc+kc] into MR-tall row panels (kc columns of MR floats each), zero-padded.
function packA(transA: i32, a: usize, lda: i32, ic: i32, mc: i32, pc: i32, kc: i32, out: usize): void {
  for (let ir: i32 = 0; ir < mc; ir += MR) {
    const height = min(MR, mc - ir);
    const panel = out + <usize>(ir * kc) * 4;
    if (transA) {
      // op(A)[i][p] = A[p][i]: MR consecutive rows of op(A) are MR contiguous floats of a stored row.
      for (let p: i32 = 0; p < kc; p++) {
        const src = a + (<usize>(pc + p) * <usize>lda + <usize>(ic + ir)) * 4;
        const dst = panel + <usize>(p * MR) * 4;
        for (let ii: i32 = 0; ii < MR; ii++) store<f32>(dst + <usize>ii * 4, ii < height ? load<f32>(src + <usize>ii * 4) : 0);
      }
    } else {
      for (let ii: i32 = 0; ii < MR; ii++) {
        if (ii < height) {
          const src = a + (<usize>(ic + ir + ii) * <usize>lda + <usize>pc) * 4;
          for (let p: i32 = 0; p < kc; p++) store<f32>(panel + <usize>(p * MR + ii) * 4, load<f32>(src + <usize>p * 4));
        } else {
          for (let p: i32 = 0; p < kc; p++) store<f32>(panel + <usize>(p * MR + ii) * 4, 0);
        }
      }
    }
  }
}

// C[0:rows, 0:cols] = alpha * (Apanel · Bpanel) + beta * C, where ldc is C's row stride in floats.
// beta == 0 never reads C (BLAS semantics: whatever C held, NaN included, is overwritten).
// @ts-ignore: decorator
@inline
function updateRow(dst: usize, lo: v128, hi: v128, alpha: v128, beta: f32): void {
  if (beta == 0) {
    v128.store(dst, f32x4.mul(alpha, lo));
    v128.store(dst, f32x4.mul(alpha, hi), 16);
  } else {
    const vb = f32x4.splat(beta);
    v128.store(dst, f32x4.add(f32x4.mul(alpha, lo), f32x4.mul(vb, v128.load(dst))));
    v128.store(dst, f32x4.add(f32x4.mul(alpha, hi), f32x4.mul(vb, v128.load(dst, 16))), 16);
  }
}

function micro(kc: i32, ap: usize, bp: usize, c: usize, ldc: i32, alpha: f32, beta: f32, rows: i32, cols: i32, tile: usize): void {
  let c0l = f32x4.splat(0), c0h = f32x4.splat(0);
  let c1l = f32x4.splat(0), c1h = f32x4.splat(0);
  let c2l = f32x4.splat(0), c2h = f32x4.splat(0);
  let c3l = f32x4.splat(0), c3h = f32x4.splat(0);
  let c4l = f32x4.splat(0), c4h = f32x4.splat(0);
  for (let p: i32 = 0; p < kc; p++) {
    const bl = v128.load(bp), bh = v128.load(bp, 16);
    let a = v128.load32_splat(ap);
    c0l = f32x4.add(c0l, f32x4.mul(a, bl)); c0h = f32x4.add(c0h, f32x4.mul(a, bh));
    a = v128.load32_splat(ap, 4);
    c1l = f32x4.add(c1l, f32x4.mul(a, bl)); c1h = f32x4.add(c1h, f32x4.mul(a, bh));
    a = v128.load32_splat(ap, 8);
    c2l = f32x4.add(c2l, f32x4.mul(a, bl)); c2h = f32x4.add(c2h, f32x4.mul(a, bh));
    a = v128.load32_splat(ap, 12);
    c3l = f32x4.add(c3l, f32x4.mul(a, bl)); c3h = f32x4.add(c3h, f32x4.mul(a, bh));
    a = v128.load32_splat(ap, 16);
    c4l = f32x4.add(c4l, f32x4.mul(a, bl)); c4h = f32x4.add(c4h, f32x4.mul(a, bh));
    ap += 20;
    bp += 32;
  }
  const va = f32x4.splat(alpha);
  const rowBytes = <usize>ldc * 4;
  if (rows == MR && cols == NR) {
    updateRow(c, c0l, c0h, va, beta);
    updateRow(c + rowBytes, c1l, c1h, va, beta);
    updateRow(c + rowBytes * 2, c2l, c2h, va, beta);
    updateRow(c + rowBytes * 3, c3l, c3h, va, beta);
    updateRow(c + rowBytes * 4, c4l, c4h, va, beta);
    return;
  }
  // Edge tile: spill the accumulators, then update only the rows×cols that exist.
  v128.store(tile, c0l); v128.store(tile, c0h, 16);
  v128.store(tile, c1l, 32); v128.store(tile, c1h, 48);
  v128.store(tile, c2l, 64); v128.store(tile, c2h, 80);
  v128.store(tile, c3l, 96); v128.store(tile, c3h, 112);
  v128.store(tile, c4l, 128); v128.store(tile, c4h, 144);
  for (let i: i32 = 0; i < rows; i++) {
    const dst = c + rowBytes * <usize>i;
    for (let j: i32 = 0; j < cols; j++) {
      const v = alpha * load<f32>(tile + <usize>(i * NR + j) * 4);
      const at = dst + <usize>j * 4;
      store<f32>(at, beta == 0 ? v : v + beta * load<f32>(at));
    }
  }
}

/**
 * C[i0:i1, j0:j1] = alpha · op(A) · op(B) + beta · C for row-major A (m×k, or k×m when transA),
 * B (k×n, or n×k when transB) and C (m×n). Requires k > 0. `scratch` holds scratchBytes() bytes owned by the caller.
 */
export function gemm(
  transA: i32, transB: i32, m: i32, n: i32, k: i32, alpha: f32, a: usize, b: usize, beta: f32, c: usize,
  i0: i32, i1: i32, j0: i32, j1: i32, scratch: usize,
): void {
  const lda = transA ? m : k;
  const ldb = transB ? k : n;
  const packedA = scratch;
  const packedB = scratch + <usize>(MC * KC) * 4;
  const tile = packedB + <usize>(KC * NC) * 4;
  for (let jc = j0; jc < j1; jc += NC) {
    const nc = min(NC, j1 - jc);
    for (let pc: i32 = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      const betaBlock: f32 = pc == 0 ? beta : 1;
      packB(transB, b, ldb, pc, kc, jc, nc, packedB);
      for (let ic = i0; ic < i1; ic += MC) {
        const mc = min(MC, i1 - ic);
        packA(transA, a, lda, ic, mc, pc, kc, packedA);
        for (let jr: i32 = 0; jr < nc; jr += NR) {
          const bPanel = packedB + <usize>(jr * kc) * 4;
          const cols = min(NR, nc - jr);
          for (let ir: i32 = 0; ir < mc; ir += MR) {
            const cAt = c + (<usize>(ic + ir) * <usize>n + <usize>(jc + jr)) * 4;
            micro(kc, packedA + <usize>(ir * kc) * 4, bPanel, cAt, n, alpha, betaBlock, min(MR, mc - ir), cols, tile);
          }
        }
      }
    }
  }
}
