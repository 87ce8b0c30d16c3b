/**
 * Forward and manual backward of the LLaMA architecture exactly as llama.cpp runs it, with LoRA on the projections.
 * Gradients flow through the frozen weights to the activations and land only on LoRA A/B.
 *
 * Memory: a batch is a set of packed sequences processed at once (micro-batching bounds it by the batch's token
 * count), and with `checkpoint: true` only each layer's input is kept during the forward; the backward recomputes
 * one layer at a time (activation checkpointing per layer), so peak activation memory is one layer's worth.
 */
import { seededRandom } from "../../gguf/index.js";
import type { LlamaModelFile } from "./llama-weights.js";
import { type LoraAdapter, type LoraModule, type LoraTarget, loraScale, loraTargets } from "./lora.js";
import type { LlamaConfig } from "./model-config.js";
import {
  type AttentionCache,
  attentionBackward,
  attentionForward,
  crossEntropy,
  type Precision,
  type RopeTable,
  rmsNormBackward,
  rmsNormForward,
  ropeApply,
  ropeTable,
  type Segments,
  swigluBackward,
  swigluForward,
  type Vec,
} from "./ops.js";

/** Packed token rows: sequences back to back, each with its own positions from 0. */
export interface TrainBatch {
  tokens: Int32Array;
  positions: Int32Array;
  segments: Segments;
  /** Next-token target of each row (ignored where the weight is 0). */
  targets: Int32Array;
  /** Loss weight of each row: 0 outside the completion, 1/N (N = completion tokens in the step) inside. */
  weights: Float64Array;
}

/** What the forward reads: packed token rows, each sequence with its own positions. */
export type ModelInput = Pick<TrainBatch, "tokens" | "positions" | "segments">;

/**
 * A loss on the model's outputs at selected rows, plugged into `forwardBackward`: over the logits (rows × vocab) or
 * over the final hidden state after the output RMSNorm (rows × dim). `loss` returns the scalar and, in a backward,
 * writes d(loss)/d(values) into `gradient` (for logits, `gradient` is the logits array itself: overwrite each row
 * after reading it). Both arrays are only valid during the call.
 */
export interface OutputLoss {
  over: "logits" | "hidden";
  /** Batch rows read by the loss, in the order of `values`' rows (a row may appear twice). */
  rows: Int32Array;
  loss(values: Vec, gradient: Vec | undefined): number;
}

/** SFT's loss: cross-entropy of the next token at the rows with a non-zero weight, weighted. */
export function crossEntropyLoss(batch: TrainBatch, vocab: number): OutputLoss {
  const rows: number[] = [];
  for (let t = 0; t < batch.tokens.length; t++) if (batch.weights[t]! !== 0) rows.push(t);
  const targets = Int32Array.from(rows, (t) => batch.targets[t]!);
  const weights = Float64Array.from(rows, (t) => batch.weights[t]!);
  return {
    over: "logits",
    rows: Int32Array.from(rows),
    loss: (logits, gradient) => crossEntropy(logits, targets, weights, rows.length, vocab, gradient),
  };
}

export interface LossOptions {
  /** LoRA dropout probability on the adapter input path (0 = off, also used for evaluation). */
  dropout?: number;
  /** Seed of the dropout masks of this batch (same seed, same masks: exact resume and recompute). */
  dropoutSeed?: number;
  /**
   * Per-layer activation checkpointing; "auto": on when the batch's activations (`activationBytes`) would exceed
   * `activationMemoryBytes`. Default true.
   */
  checkpoint?: boolean | "auto";
  /** Budget of "auto" checkpointing. Default 2 GiB. */
  activationMemoryBytes?: number;
}

interface LinearCache {
  /** Dropout-scaled input of the LoRA path (absent without dropout: the plain input is used). */
  xd?: Vec;
  /** mask / (1 - p) per input element. */
  mask?: Vec;
  /** A x: rows × rank. */
  u?: Vec;
}

interface LayerCache {
  x: Vec;
  xn1: Vec;
  r1: Vec;
  q: Vec;
  k: Vec;
  v: Vec;
  probs: AttentionCache;
  attn: Vec;
  xMid: Vec;
  xn2: Vec;
  r2: Vec;
  g: Vec;
  u: Vec;
  h: Vec;
  /** σ(gate), saved by the forward. */
  sig?: Vec;
  lin: Partial<Record<LoraTarget, LinearCache>>;
}

interface LayerContext {
  rows: number;
  rope: RopeTable;
  segments: Segments;
  lora?: LoraAdapter;
  dropout: number;
  dropoutSeed: number;
}

export function hashSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  }
  return h >>> 0;
}

export class LlamaTrainModel {
  readonly config: LlamaConfig;

  constructor(
    readonly model: LlamaModelFile,
    readonly precision: Precision,
  ) {
    this.config = model.config;
    this.pooled = { name: precision.name, gemm: precision.gemm, alloc: (n) => this.alloc(n) };
  }

  /** The precision with pooled allocation, handed to the attention ops. */
  private readonly pooled: Precision;

  /**
   * Typed-array pooling: large short-lived arrays otherwise cost more in garbage collection than the element-wise
   * ops themselves. `live` holds this call's arrays in allocation order; a finished scope (one layer's forward, one
   * layer's backward) hands its arrays back to `pool` for reuse, so peak memory stays what the math needs (one
   * layer's working set under checkpointing). Arrays left over from the previous call (`stale`) are reused or dropped.
   */
  private live: Vec[] = [];
  private pool = new Map<number, Vec[]>();
  private stale = new Map<number, Vec[]>();

  private alloc(n: number): Vec {
    const reused = this.pool.get(n)?.pop() ?? this.stale.get(n)?.pop();
    const array = reused ?? this.precision.alloc(n);
    if (reused) array.fill(0);
    this.live.push(array);
    return array;
  }

  private toPool(array: Vec): void {
    const list = this.pool.get(array.length);
    if (list) list.push(array);
    else this.pool.set(array.length, [array]);
  }

  /** Free the arrays allocated from position `from` of `live` onwards, except `keep`. */
  private releaseFrom(from: number, keep: Vec[] = []): void {
    for (const array of this.live.splice(from)) {
      if (keep.includes(array)) this.live.push(array);
      else this.toPool(array);
    }
  }

  /** Free live[start, end). */
  private releaseRange(start: number, end: number): void {
    for (const array of this.live.splice(start, end - start)) this.toPool(array);
  }

  /** End of a call: everything becomes reusable by the next call; what that call does not reuse is dropped. */
  private recycle(): void {
    for (const array of this.live) this.toPool(array);
    this.live = [];
    this.stale = this.pool;
    this.pool = new Map();
  }

  private module(lora: LoraAdapter | undefined, layer: number, target: LoraTarget): LoraModule | undefined {
    if (!lora) return undefined;
    const targetsPerLayer = lora.targets.length;
    const index = lora.targets.indexOf(target);
    if (index < 0) return undefined;
    return lora.modules[layer * targetsPerLayer + index];
  }

  private linearForward(
    ctx: LayerContext,
    layer: number,
    target: LoraTarget,
    x: Vec,
    w: Float32Array,
    bias: Float32Array | undefined,
    nIn: number,
    nOut: number,
    cache: LinearCache | undefined,
  ): Vec {
    const p = this.precision;
    const rows = ctx.rows;
    const y = this.alloc(rows * nOut);
    p.gemm(false, true, rows, nOut, nIn, 1, x, w, 0, y);
    if (bias)
      for (let t = 0; t < rows; t++) for (let j = 0; j < nOut; j++) y[t * nOut + j] = y[t * nOut + j]! + bias[j]!;
    const mod = this.module(ctx.lora, layer, target);
    if (!mod || !ctx.lora) return y;
    let xd = x;
    let mask: Vec | undefined;
    if (ctx.dropout > 0) {
      const random = seededRandom(hashSeed(ctx.dropoutSeed, layer, loraTargets.indexOf(target)));
      const keep = 1 / (1 - ctx.dropout);
      mask = this.alloc(rows * nIn);
      mask.fill(keep);
      // Dropped positions by geometric gaps: one random number per dropped element instead of one per element.
      const logKeep = Math.log(1 - ctx.dropout);
      for (
        let i = Math.floor(Math.log(1 - random()) / logKeep);
        i < mask.length;
        i += 1 + Math.floor(Math.log(1 - random()) / logKeep)
      ) {
        mask[i] = 0;
      }
      xd = this.alloc(rows * nIn);
      for (let i = 0; i < xd.length; i++) xd[i] = x[i]! * mask[i]!;
    }
    const r = ctx.lora.rank;
    const u = this.alloc(rows * r);
    p.gemm(false, true, rows, r, nIn, 1, xd, mod.a, 0, u);
    p.gemm(false, true, rows, nOut, r, loraScale(ctx.lora), u, mod.b, 1, y);
    if (cache) {
      cache.u = u;
      if (mask) {
        cache.mask = mask;
        cache.xd = xd;
      }
    }
    return y;
  }

  /** dx (overwritten, or added to when accumulate) from dy; LoRA gradients added into `grads`. */
  private linearBackward(
    ctx: LayerContext,
    layer: number,
    target: LoraTarget,
    x: Vec,
    dy: Vec,
    w: Float32Array,
    nIn: number,
    nOut: number,
    cache: LinearCache,
    grads: LoraAdapter | undefined,
    dx: Vec | undefined,
    accumulate: boolean,
  ): void {
    const p = this.precision;
    const rows = ctx.rows;
    if (dx) p.gemm(false, false, rows, nIn, nOut, 1, dy, w, accumulate ? 1 : 0, dx);
    const mod = this.module(ctx.lora, layer, target);
    if (!mod || !ctx.lora || !cache.u) return;
    const r = ctx.lora.rank;
    const s = loraScale(ctx.lora);
    const xd = cache.xd ?? x;
    const grad = this.module(grads, layer, target);
    const du = this.alloc(rows * r);
    p.gemm(false, false, rows, r, nOut, s, dy, mod.b, 0, du);
    if (grad) {
      p.gemm(true, false, nOut, r, rows, s, dy, cache.u, 1, grad.b);
      p.gemm(true, false, r, nIn, rows, 1, du, xd, 1, grad.a);
    }
    if (!dx) return;
    if (cache.mask) {
      const dxd = this.alloc(rows * nIn);
      p.gemm(false, false, rows, nIn, r, 1, du, mod.a, 0, dxd);
      const mask = cache.mask;
      for (let i = 0; i < dxd.length; i++) dx[i] = dx[i]! + dxd[i]! * mask[i]!;
    } else {
      p.gemm(false, false, rows, nIn, r, 1, du, mod.a, 1, dx);
    }
  }

  private layerForward(ctx: LayerContext, layer: number, x: Vec, keep: boolean): { out: Vec; cache?: LayerCache } {
    const c = this.config;
    const w = this.model.weights.layers[layer]!;
    const rows = ctx.rows;
    const kvDim = c.kvHeads * c.headDim;
    const lin: Partial<Record<LoraTarget, LinearCache>> = {};
    const lc = (t: LoraTarget): LinearCache | undefined => {
      if (!keep) return undefined;
      const entry: LinearCache = {};
      lin[t] = entry;
      return entry;
    };
    const xn1 = this.alloc(rows * c.dim);
    const r1 = this.alloc(rows);
    rmsNormForward(x, w.attnNorm, rows, c.dim, c.rmsEpsilon, xn1, r1);
    const q = this.linearForward(ctx, layer, "q", xn1, w.q, w.qBias, c.dim, c.dim, lc("q"));
    const k = this.linearForward(ctx, layer, "k", xn1, w.k, w.kBias, c.dim, kvDim, lc("k"));
    const v = this.linearForward(ctx, layer, "v", xn1, w.v, w.vBias, c.dim, kvDim, lc("v"));
    ropeApply(q, rows, c.heads, c.headDim, c.ropeMode, ctx.rope, false);
    ropeApply(k, rows, c.kvHeads, c.headDim, c.ropeMode, ctx.rope, false);
    const attn = this.alloc(rows * c.dim);
    const probs = attentionForward(this.pooled, q, k, v, ctx.segments, c, attn);
    const o = this.linearForward(ctx, layer, "o", attn, w.o, undefined, c.dim, c.dim, lc("o"));
    const xMid = this.alloc(rows * c.dim);
    for (let i = 0; i < xMid.length; i++) xMid[i] = x[i]! + o[i]!;
    const xn2 = this.alloc(rows * c.dim);
    const r2 = this.alloc(rows);
    rmsNormForward(xMid, w.ffnNorm, rows, c.dim, c.rmsEpsilon, xn2, r2);
    const g = this.linearForward(ctx, layer, "gate", xn2, w.gate, undefined, c.dim, c.ffn, lc("gate"));
    const u = this.linearForward(ctx, layer, "up", xn2, w.up, undefined, c.dim, c.ffn, lc("up"));
    const h = this.alloc(rows * c.ffn);
    const sig = keep ? this.alloc(rows * c.ffn) : undefined;
    swigluForward(g, u, h, sig);
    const d = this.linearForward(ctx, layer, "down", h, w.down, undefined, c.ffn, c.dim, lc("down"));
    const out = d;
    for (let i = 0; i < out.length; i++) out[i] = out[i]! + xMid[i]!;
    if (!keep) return { out };
    return { out, cache: { x, xn1, r1, q, k, v, probs, attn, xMid, xn2, r2, g, u, h, sig, lin } };
  }

  /** Returns d(loss)/d(layer input), or undefined when `inputGradient` is false (layer 0: embeddings are frozen). */
  private layerBackward(
    ctx: LayerContext,
    layer: number,
    cache: LayerCache,
    dOut: Vec,
    grads: LoraAdapter | undefined,
    inputGradient: boolean,
  ): Vec | undefined {
    const c = this.config;
    const w = this.model.weights.layers[layer]!;
    const rows = ctx.rows;
    const kvDim = c.kvHeads * c.headDim;
    const lin = (t: LoraTarget): LinearCache => cache.lin[t] ?? {};
    // MLP: out = xMid + down(silu(gate(xn2)) * up(xn2)).
    const dh = this.alloc(rows * c.ffn);
    this.linearBackward(ctx, layer, "down", cache.h, dOut, w.down, c.ffn, c.dim, lin("down"), grads, dh, false);
    const dg = this.alloc(rows * c.ffn);
    const du = this.alloc(rows * c.ffn);
    swigluBackward(cache.g, cache.u, dh, dg, du, cache.sig);
    const dxn2 = this.alloc(rows * c.dim);
    this.linearBackward(ctx, layer, "gate", cache.xn2, dg, w.gate, c.dim, c.ffn, lin("gate"), grads, dxn2, false);
    this.linearBackward(ctx, layer, "up", cache.xn2, du, w.up, c.dim, c.ffn, lin("up"), grads, dxn2, true);
    const dxMid = this.alloc(rows * c.dim);
    dxMid.set(dOut);
    rmsNormBackward(cache.xMid, w.ffnNorm, cache.r2, dxn2, rows, c.dim, dxMid, true);
    // Attention: xMid = x + o(attn(rope(q), rope(k), v)).
    const dAttn = this.alloc(rows * c.dim);
    this.linearBackward(ctx, layer, "o", cache.attn, dxMid, w.o, c.dim, c.dim, lin("o"), grads, dAttn, false);
    const dq = this.alloc(rows * c.dim);
    const dk = this.alloc(rows * kvDim);
    const dv = this.alloc(rows * kvDim);
    attentionBackward(this.pooled, cache.q, cache.k, cache.v, cache.probs, dAttn, ctx.segments, c, dq, dk, dv);
    ropeApply(dq, rows, c.heads, c.headDim, c.ropeMode, ctx.rope, true);
    ropeApply(dk, rows, c.kvHeads, c.headDim, c.ropeMode, ctx.rope, true);
    const dxn1 = inputGradient ? this.alloc(rows * c.dim) : undefined;
    this.linearBackward(ctx, layer, "q", cache.xn1, dq, w.q, c.dim, c.dim, lin("q"), grads, dxn1, false);
    this.linearBackward(ctx, layer, "k", cache.xn1, dk, w.k, c.dim, kvDim, lin("k"), grads, dxn1, true);
    this.linearBackward(ctx, layer, "v", cache.xn1, dv, w.v, c.dim, kvDim, lin("v"), grads, dxn1, true);
    if (!dxn1) return undefined;
    const dx = dxMid;
    rmsNormBackward(cache.x, w.attnNorm, cache.r1, dxn1, rows, c.dim, dx, true);
    return dx;
  }

  private embed(tokens: Int32Array): Vec {
    const dim = this.config.dim;
    const x = this.alloc(tokens.length * dim);
    const table = this.model.weights.tokenEmbedding;
    for (let t = 0; t < tokens.length; t++) {
      const id = tokens[t]!;
      if (id < 0 || id >= this.config.vocabSize) throw new RangeError(`token id ${id} outside the vocabulary`);
      for (let i = 0; i < dim; i++) x[t * dim + i] = table[id * dim + i]!;
    }
    return x;
  }

  private context(batch: ModelInput, lora?: LoraAdapter, options: LossOptions = {}): LayerContext {
    const c = this.config;
    return {
      rows: batch.tokens.length,
      rope: ropeTable(batch.positions, c.ropeDims, c.ropeFreqBase, c.ropeFreqScale, this.model.weights.ropeFactors),
      segments: batch.segments,
      lora,
      dropout: options.dropout ?? 0,
      dropoutSeed: options.dropoutSeed ?? 0,
    };
  }

  /** Bytes of the activations kept for the backward of `batch` without checkpointing (all layers). */
  activationBytes(batch: Pick<TrainBatch, "segments">): number {
    const c = this.config;
    const starts = batch.segments.starts;
    const rows = starts[starts.length - 1]! - starts[0]!;
    let squares = 0;
    for (let s = 0; s + 1 < starts.length; s++) squares += (starts[s + 1]! - starts[s]!) ** 2;
    const kv = c.kvHeads * c.headDim;
    const perLayer = rows * (c.dim * 8 + kv * 2 + c.ffn * 4) + c.heads * squares;
    const bytes = this.precision.name === "f32" ? 4 : 8;
    return c.layers * perLayer * bytes;
  }

  /** Logits [rows, vocab] of every row (evaluation, and the llama.cpp parity check). */
  logits(batch: ModelInput, lora?: LoraAdapter): Vec {
    const c = this.config;
    const ctx = this.context(batch, lora);
    let x = this.embed(batch.tokens);
    for (let l = 0; l < c.layers; l++) {
      const mark = this.live.length;
      x = this.layerForward(ctx, l, x, false).out;
      this.releaseFrom(mark, [x]);
    }
    const xn = this.alloc(ctx.rows * c.dim);
    rmsNormForward(x, this.model.weights.outputNorm, ctx.rows, c.dim, c.rmsEpsilon, xn, this.alloc(ctx.rows));
    const logits = this.precision.alloc(ctx.rows * c.vocabSize);
    this.precision.gemm(false, true, ctx.rows, c.vocabSize, c.dim, 1, xn, this.model.weights.output, 0, logits);
    this.recycle();
    return logits;
  }

  /**
   * Weighted cross-entropy sum of the batch (SFT); when `grads` is given, adds d(loss)/d(LoRA) into it.
   * Only rows with a non-zero weight go through the output head.
   */
  lossAndGradient(
    batch: TrainBatch,
    lora: LoraAdapter | undefined,
    grads: LoraAdapter | undefined,
    options: LossOptions = {},
  ): number {
    return this.forwardBackward(batch, lora, grads, crossEntropyLoss(batch, this.config.vocabSize), options);
  }

  /**
   * The forward of `input` and the value of `output`'s loss; when `grads` is given, the backward too, adding
   * d(loss)/d(LoRA) into `grads`. Only `output.rows` go through the output norm (and head).
   */
  forwardBackward(
    input: ModelInput,
    lora: LoraAdapter | undefined,
    grads: LoraAdapter | undefined,
    output: OutputLoss,
    options: LossOptions = {},
  ): number {
    const c = this.config;
    const ctx = this.context(input, lora, options);
    const checkpoint =
      options.checkpoint === "auto"
        ? this.activationBytes(input) > (options.activationMemoryBytes ?? 2 ** 31)
        : (options.checkpoint ?? true);
    const backward = grads !== undefined;
    const inputs: Vec[] = [];
    const caches: LayerCache[] = [];
    // Without checkpointing, layer l's forward arrays are live[ranges[l], ranges[l + 1]) until its backward.
    const ranges: number[] = [];
    let x = this.embed(input.tokens);
    for (let l = 0; l < c.layers; l++) {
      inputs.push(x);
      const keep = backward && !checkpoint;
      const mark = this.live.length;
      ranges.push(mark);
      const result = this.layerForward(ctx, l, x, keep);
      if (result.cache) caches.push(result.cache);
      else this.releaseFrom(mark, [result.out]);
      x = result.out;
    }
    ranges.push(this.live.length);
    const rows = output.rows;
    const n = rows.length;
    const xs = this.alloc(n * c.dim);
    for (let i = 0; i < n; i++) {
      const row = rows[i]!;
      if (row < 0 || row >= ctx.rows) throw new RangeError(`output row ${row} outside the batch of ${ctx.rows} rows`);
      xs.set(x.subarray(row * c.dim, (row + 1) * c.dim), i * c.dim);
    }
    const xn = this.alloc(n * c.dim);
    const r = this.alloc(n);
    rmsNormForward(xs, this.model.weights.outputNorm, n, c.dim, c.rmsEpsilon, xn, r);
    let loss: number;
    let dxn: Vec | undefined;
    if (output.over === "logits") {
      const logits = this.alloc(n * c.vocabSize);
      this.precision.gemm(false, true, n, c.vocabSize, c.dim, 1, xn, this.model.weights.output, 0, logits);
      loss = output.loss(logits, backward ? logits : undefined);
      if (backward) {
        dxn = this.alloc(n * c.dim);
        this.precision.gemm(false, false, n, c.dim, c.vocabSize, 1, logits, this.model.weights.output, 0, dxn);
      }
    } else {
      dxn = backward ? this.alloc(n * c.dim) : undefined;
      loss = output.loss(xn, dxn);
    }
    if (!grads || !dxn) {
      this.recycle();
      return loss;
    }
    const dxs = this.alloc(n * c.dim);
    rmsNormBackward(xs, this.model.weights.outputNorm, r, dxn, n, c.dim, dxs, false);
    let dx: Vec | undefined = this.alloc(ctx.rows * c.dim);
    // A row selected twice gets both gradients.
    for (let i = 0; i < n; i++) {
      const at = rows[i]! * c.dim;
      for (let j = 0; j < c.dim; j++) dx[at + j] = dx[at + j]! + dxs[i * c.dim + j]!;
    }
    for (let l = c.layers - 1; l >= 0; l--) {
      const input = inputs.pop()!;
      // The incoming gradient is the newest survivor in `live`: free it with this layer's temporaries.
      const mark = this.live.lastIndexOf(dx!);
      const cache = checkpoint ? this.layerForward(ctx, l, input, true).cache! : caches.pop()!;
      dx = this.layerBackward(ctx, l, cache, dx!, grads, l > 0);
      this.releaseFrom(mark, dx ? [dx] : []);
      if (!checkpoint) this.releaseRange(ranges[l]!, ranges[l + 1]!);
    }
    this.recycle();
    return loss;
  }
}
