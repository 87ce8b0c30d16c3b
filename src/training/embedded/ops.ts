/**
 * Forward and backward of every non-matmul op of the LLaMA block, over row-major arrays of either precision
 * (Float32Array for training, Float64Array for the finite-difference check path). Backward functions return or
 * accumulate gradients with respect to the op's *inputs* only: frozen weights get no gradient.
 */
import { float16BitsToFloat32, float32ToFloat16Bits } from "../../gguf/float16.js";
import type { RopeMode } from "./model-config.js";

export type Vec = Float32Array | Float64Array;

/** C = alpha * op(A) op(B) + beta * C (row-major), the one matmul signature every op goes through. */
export type Gemm = (
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Vec,
  b: Vec,
  beta: number,
  c: Vec,
) => void;

/** Array allocation and matmul of one precision. */
export interface Precision {
  readonly name: "f32" | "f64";
  alloc(n: number): Vec;
  gemm: Gemm;
}

/** Naive float64 gemm: the independent reference used by the check path (any Vec inputs, exact double sums). */
const gemm64: Gemm = (transA, transB, m, n, k, alpha, a, b, beta, c) => {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) {
        sum += (transA ? a[p * m + i]! : a[i * k + p]!) * (transB ? b[j * k + p]! : b[p * n + j]!);
      }
      const at = i * n + j;
      c[at] = beta === 0 ? alpha * sum : alpha * sum + beta * c[at]!;
    }
  }
};

export const float64Precision: Precision = { name: "f64", alloc: (n) => new Float64Array(n), gemm: gemm64 };

/** y = x / sqrt(mean(x²) + eps) * g per row; returns the per-row inverse RMS for the backward. */
export function rmsNormForward(x: Vec, g: Vec, rows: number, dim: number, eps: number, y: Vec, invRms: Vec): void {
  for (let t = 0; t < rows; t++) {
    const o = t * dim;
    let sum = 0;
    for (let i = 0; i < dim; i++) sum += x[o + i]! * x[o + i]!;
    const r = 1 / Math.sqrt(sum / dim + eps);
    invRms[t] = r;
    for (let i = 0; i < dim; i++) y[o + i] = x[o + i]! * r * g[i]!;
  }
}

/** dx (+)= r * (dy*g - xhat * mean(dy*g*xhat)), xhat = x*r. */
export function rmsNormBackward(
  x: Vec,
  g: Vec,
  invRms: Vec,
  dy: Vec,
  rows: number,
  dim: number,
  dx: Vec,
  accumulate: boolean,
): void {
  for (let t = 0; t < rows; t++) {
    const o = t * dim;
    const r = invRms[t]!;
    let dot = 0;
    for (let i = 0; i < dim; i++) dot += dy[o + i]! * g[i]! * x[o + i]! * r;
    const mean = dot / dim;
    for (let i = 0; i < dim; i++) {
      const v = r * (dy[o + i]! * g[i]! - x[o + i]! * r * mean);
      dx[o + i] = accumulate ? dx[o + i]! + v : v;
    }
  }
}

/** RoPE angle table: cos/sin for each token (by position) and rotated pair, shared by q and k. */
export interface RopeTable {
  pairs: number;
  cos: Float64Array;
  sin: Float64Array;
}

export function ropeTable(
  positions: Int32Array,
  ropeDims: number,
  freqBase: number,
  freqScale: number,
  factors?: Float32Array,
): RopeTable {
  const pairs = ropeDims / 2;
  const cos = new Float64Array(positions.length * pairs);
  const sin = new Float64Array(positions.length * pairs);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < pairs; i++) {
      const theta = (freqScale * positions[t]! * freqBase ** ((-2 * i) / ropeDims)) / (factors ? factors[i]! : 1);
      cos[t * pairs + i] = Math.cos(theta);
      sin[t * pairs + i] = Math.sin(theta);
    }
  }
  return { pairs, cos, sin };
}

/** Rotate (in place) each head of x [rows, heads*headDim]; `inverse` applies the transpose (the backward). */
export function ropeApply(
  x: Vec,
  rows: number,
  heads: number,
  headDim: number,
  mode: RopeMode,
  table: RopeTable,
  inverse: boolean,
): void {
  const { pairs, cos, sin } = table;
  const sign = inverse ? -1 : 1;
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * headDim;
      for (let i = 0; i < pairs; i++) {
        const c = cos[t * pairs + i]!;
        const s = sign * sin[t * pairs + i]!;
        const i0 = mode === "normal" ? base + 2 * i : base + i;
        const i1 = mode === "normal" ? i0 + 1 : i0 + pairs;
        const x0 = x[i0]!;
        const x1 = x[i1]!;
        x[i0] = x0 * c - x1 * s;
        x[i1] = x0 * s + x1 * c;
      }
    }
  }
}

/** Packed sequences: token rows [starts[s], starts[s+1]) form sequence s; attention never crosses them. */
export interface Segments {
  starts: Int32Array;
}

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Scale of q·k. Default 1/sqrt(headDim). */
  attentionScale?: number;
  /** Scores become cap·tanh(s / cap) before the softmax (gemma2). */
  attentionSoftcap?: number;
  /** Sliding window: query i sees keys j with i - window < j <= i. Default: all earlier keys. */
  window?: number;
}

/** First key a query at `i` attends to. */
function firstKey(i: number, window: number | undefined): number {
  return window === undefined ? 0 : Math.max(0, i - window + 1);
}

/** Softmax probabilities of every (segment, head), kept for the backward. */
export type AttentionCache = Vec[];

function gatherHead(src: Vec, width: number, start: number, len: number, col: number, hd: number, out: Vec): void {
  for (let t = 0; t < len; t++) {
    const from = (start + t) * width + col;
    for (let d = 0; d < hd; d++) out[t * hd + d] = src[from + d]!;
  }
}

function scatterHead(src: Vec, width: number, start: number, len: number, col: number, hd: number, out: Vec): void {
  for (let t = 0; t < len; t++) {
    const to = (start + t) * width + col;
    for (let d = 0; d < hd; d++) out[to + d] = out[to + d]! + src[t * hd + d]!;
  }
}

/** Causal grouped-query attention: out[t, h] = softmax(q k^T / sqrt(hd)) v, kv head = h / (H / HKV). */
export function attentionForward(
  p: Precision,
  q: Vec,
  k: Vec,
  v: Vec,
  segments: Segments,
  shape: AttentionShape,
  out: Vec,
): AttentionCache {
  const { heads, kvHeads, headDim: hd, attentionSoftcap: cap, window } = shape;
  const qw = heads * hd;
  const kw = kvHeads * hd;
  const group = heads / kvHeads;
  const scale = shape.attentionScale ?? 1 / Math.sqrt(hd);
  const cache: AttentionCache = [];
  out.fill(0);
  for (let s = 0; s + 1 < segments.starts.length; s++) {
    const start = segments.starts[s]!;
    const len = segments.starts[s + 1]! - start;
    const qh = p.alloc(len * hd);
    const kh = p.alloc(len * hd);
    const vh = p.alloc(len * hd);
    const oh = p.alloc(len * hd);
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      gatherHead(q, qw, start, len, h * hd, hd, qh);
      gatherHead(k, kw, start, len, kvh * hd, hd, kh);
      gatherHead(v, kw, start, len, kvh * hd, hd, vh);
      const probs = p.alloc(len * len);
      p.gemm(false, true, len, len, hd, scale, qh, kh, 0, probs);
      for (let i = 0; i < len; i++) {
        const row = i * len;
        const from = firstKey(i, window);
        if (cap !== undefined) for (let j = from; j <= i; j++) probs[row + j] = cap * Math.tanh(probs[row + j]! / cap);
        let max = -Infinity;
        for (let j = from; j <= i; j++) max = Math.max(max, probs[row + j]!);
        let sum = 0;
        for (let j = from; j <= i; j++) {
          const e = Math.exp(probs[row + j]! - max);
          probs[row + j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let j = 0; j < from; j++) probs[row + j] = 0;
        for (let j = from; j <= i; j++) probs[row + j] = probs[row + j]! * inv;
        for (let j = i + 1; j < len; j++) probs[row + j] = 0;
      }
      p.gemm(false, false, len, hd, len, 1, probs, vh, 0, oh);
      scatterHead(oh, qw, start, len, h * hd, hd, out);
      cache.push(probs);
    }
  }
  return cache;
}

/** Gradients of attention with respect to q, k and v (overwritten). */
export function attentionBackward(
  p: Precision,
  q: Vec,
  k: Vec,
  v: Vec,
  cache: AttentionCache,
  dOut: Vec,
  segments: Segments,
  shape: AttentionShape,
  dq: Vec,
  dk: Vec,
  dv: Vec,
): void {
  const { heads, kvHeads, headDim: hd, attentionSoftcap: cap, window } = shape;
  const qw = heads * hd;
  const kw = kvHeads * hd;
  const group = heads / kvHeads;
  const scale = shape.attentionScale ?? 1 / Math.sqrt(hd);
  dq.fill(0);
  dk.fill(0);
  dv.fill(0);
  let index = 0;
  for (let s = 0; s + 1 < segments.starts.length; s++) {
    const start = segments.starts[s]!;
    const len = segments.starts[s + 1]! - start;
    const qh = p.alloc(len * hd);
    const kh = p.alloc(len * hd);
    const vh = p.alloc(len * hd);
    const doh = p.alloc(len * hd);
    const dqh = p.alloc(len * hd);
    const dkh = p.alloc(len * hd);
    const dvh = p.alloc(len * hd);
    const dp = p.alloc(len * len);
    // Soft-capping: the raw scores again, for the derivative 1 - tanh²(s / cap).
    const scores = cap === undefined ? undefined : p.alloc(len * len);
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const probs = cache[index++]!;
      gatherHead(q, qw, start, len, h * hd, hd, qh);
      gatherHead(k, kw, start, len, kvh * hd, hd, kh);
      gatherHead(v, kw, start, len, kvh * hd, hd, vh);
      gatherHead(dOut, qw, start, len, h * hd, hd, doh);
      // dV = P^T dO; dP = dO V^T; dS = P ⊙ (dP - rowsum(dP ⊙ P)) * scale.
      p.gemm(true, false, len, hd, len, 1, probs, doh, 0, dvh);
      p.gemm(false, true, len, len, hd, 1, doh, vh, 0, dp);
      if (scores) p.gemm(false, true, len, len, hd, scale, qh, kh, 0, scores);
      for (let i = 0; i < len; i++) {
        const row = i * len;
        const from = firstKey(i, window);
        let dot = 0;
        for (let j = from; j <= i; j++) dot += dp[row + j]! * probs[row + j]!;
        for (let j = 0; j < from; j++) dp[row + j] = 0;
        for (let j = from; j <= i; j++) dp[row + j] = probs[row + j]! * (dp[row + j]! - dot) * scale;
        if (scores && cap !== undefined)
          for (let j = from; j <= i; j++) {
            const t = Math.tanh(scores[row + j]! / cap);
            dp[row + j] = dp[row + j]! * (1 - t * t);
          }
        for (let j = i + 1; j < len; j++) dp[row + j] = 0;
      }
      p.gemm(false, false, len, hd, len, 1, dp, kh, 0, dqh);
      p.gemm(true, false, len, hd, len, 1, dp, qh, 0, dkh);
      scatterHead(dqh, qw, start, len, h * hd, hd, dq);
      scatterHead(dkh, kw, start, len, kvh * hd, hd, dk);
      scatterHead(dvh, kw, start, len, kvh * hd, hd, dv);
    }
  }
}

/** h = silu(g) * u; when `sig` is given, σ(g) is stored there for the backward. */
export function swigluForward(g: Vec, u: Vec, h: Vec, sig?: Vec): void {
  for (let i = 0; i < h.length; i++) {
    const x = g[i]!;
    const s = 1 / (1 + Math.exp(-x));
    if (sig) sig[i] = s;
    h[i] = x * s * u[i]!;
  }
}

/** dg, du from dh; `sig` (σ(g) saved by the forward) avoids recomputing the exponentials. */
export function swigluBackward(g: Vec, u: Vec, dh: Vec, dg: Vec, du: Vec, sig?: Vec): void {
  for (let i = 0; i < dh.length; i++) {
    const x = g[i]!;
    const s = sig ? sig[i]! : 1 / (1 + Math.exp(-x));
    du[i] = dh[i]! * x * s;
    dg[i] = dh[i]! * u[i]! * s * (1 + x * (1 - s));
  }
}

const geluCoefficient = Math.fround(0.044715);
const sqrt2OverPi = Math.fround(0.7978845608028654);

/** ggml's tanh-approximated GELU, in single precision as ggml_gelu_f32 computes it. */
function geluF32(x: number): number {
  const f = Math.fround;
  const inner = f(f(sqrt2OverPi * x) * f(1 + f(f(geluCoefficient * x) * x)));
  return f(f(0.5 * x) * f(1 + f(Math.tanh(inner))));
}

let geluTable: Float32Array | undefined;

/**
 * GELU as llama.cpp's CPU backend evaluates it (ggml_vec_geglu_f32 with GGML_GELU_FP16): x is rounded to half
 * precision and looked up in a table of half-precision GELU values; x <= -10 gives 0 and x >= 10 gives x.
 */
function geluLlamaCpp(x: number): number {
  if (x <= -10) return 0;
  if (x >= 10) return x;
  if (!geluTable) {
    geluTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) {
      const value = float16BitsToFloat32(bits);
      geluTable[bits] = Number.isFinite(value) ? float16BitsToFloat32(float32ToFloat16Bits(geluF32(value))) : value;
    }
  }
  return geluTable[float32ToFloat16Bits(x)]!;
}

/** The exact tanh-approximated GELU and its derivative. */
function geluExact(x: number): { value: number; slope: number } {
  const c = 0.7978845608028654;
  const inner = c * (x + 0.044715 * x * x * x);
  const t = Math.tanh(inner);
  return { value: 0.5 * x * (1 + t), slope: 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x) };
}

/**
 * h = gelu(g) * u (GeGLU, gemma). `llamaCpp`: GELU through llama.cpp's half-precision table (the forward the trained
 * adapter will run under); otherwise the smooth function (the float64 check path, whose gradient is checked by
 * finite differences).
 */
export function gegluForward(g: Vec, u: Vec, h: Vec, llamaCpp: boolean): void {
  for (let i = 0; i < h.length; i++) h[i] = (llamaCpp ? geluLlamaCpp(g[i]!) : geluExact(g[i]!).value) * u[i]!;
}

/** dg, du from dh, with the smooth GELU's derivative (the table's is zero almost everywhere). */
export function gegluBackward(g: Vec, u: Vec, dh: Vec, dg: Vec, du: Vec, llamaCpp: boolean): void {
  for (let i = 0; i < dh.length; i++) {
    const { value, slope } = geluExact(g[i]!);
    du[i] = dh[i]! * (llamaCpp ? geluLlamaCpp(g[i]!) : value);
    dg[i] = dh[i]! * u[i]! * slope;
  }
}

/** x = cap·tanh(x / cap), in place (gemma's final logit soft-capping). */
export function softcapForward(x: Vec, cap: number): void {
  for (let i = 0; i < x.length; i++) x[i] = cap * Math.tanh(x[i]! / cap);
}

/** The gradient through softcapForward, in place: d(x) *= 1 - (y / cap)², from the capped values y. */
export function softcapBackward(gradient: Vec, capped: Vec, cap: number): void {
  for (let i = 0; i < gradient.length; i++) {
    const t = capped[i]! / cap;
    gradient[i] = gradient[i]! * (1 - t * t);
  }
}

/**
 * Cross-entropy of logits [rows, vocab] against targets, each row weighted (weight 0 = masked).
 * Returns the weighted sum of losses; writes d(weighted sum)/d(logits) into dLogits (overwriting the logits is allowed).
 */
export function crossEntropy(
  logits: Vec,
  targets: Int32Array,
  weights: Float64Array,
  rows: number,
  vocab: number,
  dLogits: Vec | undefined,
): number {
  let total = 0;
  for (let t = 0; t < rows; t++) {
    const o = t * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) max = Math.max(max, logits[o + j]!);
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[o + j]! - max);
    const logZ = max + Math.log(sum);
    const w = weights[t]!;
    total += w * (logZ - logits[o + targets[t]!]!);
    if (dLogits) {
      for (let j = 0; j < vocab; j++) dLogits[o + j] = w * Math.exp(logits[o + j]! - logZ);
      dLogits[o + targets[t]!] = dLogits[o + targets[t]!]! - w;
    }
  }
  return total;
}

/** log p(target) of each row under softmax(logits / temperature), into `out` (the pieces of a sequence log-prob). */
export function tokenLogProbs(
  logits: Vec,
  targets: Int32Array,
  rows: number,
  vocab: number,
  temperature: number,
  out: Float64Array,
): void {
  const inv = 1 / temperature;
  for (let t = 0; t < rows; t++) {
    const o = t * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) max = Math.max(max, logits[o + j]! * inv);
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[o + j]! * inv - max);
    out[t] = logits[o + targets[t]!]! * inv - max - Math.log(sum);
  }
}

/** Entropy (nats) of softmax(logits_t / T) for each of `rows` rows, into `out`: log Z − Σ_j p_j x_j / T. */
export function tokenEntropies(logits: Vec, rows: number, vocab: number, temperature: number, out: Float64Array): void {
  const inv = 1 / temperature;
  for (let t = 0; t < rows; t++) {
    const o = t * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) max = Math.max(max, logits[o + j]! * inv);
    let sum = 0;
    let weighted = 0;
    for (let j = 0; j < vocab; j++) {
      const x = logits[o + j]! * inv - max;
      const e = Math.exp(x);
      sum += e;
      weighted += e * x;
    }
    out[t] = Math.log(sum) - weighted / sum;
  }
}

/**
 * d(Σ_t g_t log p_t)/d(logits) = (g_t / T) (onehot(target_t) − softmax(logits_t / T)), row by row into dLogits
 * (which may be `logits` itself: each row is read before it is overwritten).
 */
export function tokenLogProbsBackward(
  logits: Vec,
  targets: Int32Array,
  dLogProbs: Float64Array,
  rows: number,
  vocab: number,
  temperature: number,
  dLogits: Vec,
): void {
  const inv = 1 / temperature;
  for (let t = 0; t < rows; t++) {
    const o = t * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) max = Math.max(max, logits[o + j]! * inv);
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[o + j]! * inv - max);
    const logZ = max + Math.log(sum);
    const g = dLogProbs[t]! * inv;
    for (let j = 0; j < vocab; j++) dLogits[o + j] = -g * Math.exp(logits[o + j]! * inv - logZ);
    dLogits[o + targets[t]!] = dLogits[o + targets[t]!]! + g;
  }
}

/** log(1 + e^x) without overflow. */
export function softplus(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

/** 1 / (1 + e^-x) without overflow. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}
