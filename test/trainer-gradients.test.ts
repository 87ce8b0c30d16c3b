import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededNormal, type TinyModelOptions, writeTinyModel } from "../src/gguf/index.js";
import { LlamaTrainModel, type TrainBatch } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { createLora, loraTargets, zerosLike } from "../src/training/embedded/lora.js";
import {
  attentionBackward,
  attentionForward,
  crossEntropy,
  float64Precision,
  gegluBackward,
  gegluForward,
  rmsNormBackward,
  rmsNormForward,
  ropeApply,
  ropeTable,
  softcapBackward,
  softcapForward,
  swigluBackward,
  swigluForward,
  type Vec,
} from "../src/training/embedded/ops.js";

const p = float64Precision;
const normal = seededNormal(42);
const randomVec = (n: number, scale = 1) => Float64Array.from({ length: n }, () => normal() * scale);
const dot = (a: Vec, b: Vec) => {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
};

/** Central difference of f at x along coordinate i, in float64. */
function finiteDifference(f: () => number, x: Vec, i: number, h = 1e-5): number {
  const saved = x[i]!;
  x[i] = saved + h;
  const plus = f();
  x[i] = saved - h;
  const minus = f();
  x[i] = saved;
  return (plus - minus) / (2 * h);
}

function expectClose(analytic: number, numeric: number, relative = 1e-6, absolute = 1e-9): void {
  expect(Math.abs(analytic - numeric)).toBeLessThanOrEqual(
    absolute + relative * Math.max(Math.abs(analytic), Math.abs(numeric)),
  );
}

/** Checks every coordinate of the input gradient of scalar L(x) = <probe, op(x)>. */
function checkInputGradient(x: Vec, loss: () => number, gradient: Vec): void {
  for (let i = 0; i < x.length; i++) expectClose(gradient[i]!, finiteDifference(loss, x, i));
}

describe("op backward equals central finite differences (float64)", () => {
  it("rmsnorm", () => {
    const rows = 3,
      dim = 8;
    const x = randomVec(rows * dim),
      g = randomVec(dim),
      probe = randomVec(rows * dim);
    const forward = () => {
      const y = p.alloc(rows * dim);
      rmsNormForward(x, g, rows, dim, 1e-5, y, p.alloc(rows));
      return dot(y, probe);
    };
    const r = p.alloc(rows);
    rmsNormForward(x, g, rows, dim, 1e-5, p.alloc(rows * dim), r);
    const dx = p.alloc(rows * dim);
    rmsNormBackward(x, g, r, probe, rows, dim, dx, false);
    checkInputGradient(x, forward, dx);
  });

  for (const mode of ["normal", "neox"] as const) {
    it(`rope (${mode})`, () => {
      const rows = 4,
        heads = 2,
        hd = 8;
      const table = ropeTable(Int32Array.from([0, 1, 2, 7]), 6, 10000, 1);
      const x = randomVec(rows * heads * hd),
        probe = randomVec(x.length);
      const forward = () => {
        const y = Float64Array.from(x);
        ropeApply(y, rows, heads, hd, mode, table, false);
        return dot(y, probe);
      };
      const dx = Float64Array.from(probe);
      ropeApply(dx, rows, heads, hd, mode, table, true);
      checkInputGradient(x, forward, dx);
    });
  }

  it("causal grouped-query attention over two packed sequences", () => {
    const shape = { heads: 4, kvHeads: 2, headDim: 4 };
    const segments = { starts: Int32Array.from([0, 3, 7]) };
    const rows = 7;
    const q = randomVec(rows * 16),
      k = randomVec(rows * 8),
      v = randomVec(rows * 8),
      probe = randomVec(rows * 16);
    const forward = () => {
      const out = p.alloc(rows * 16);
      attentionForward(p, q, k, v, segments, shape, out);
      return dot(out, probe);
    };
    const out = p.alloc(rows * 16);
    const cache = attentionForward(p, q, k, v, segments, shape, out);
    const dq = p.alloc(q.length),
      dk = p.alloc(k.length),
      dv = p.alloc(v.length);
    attentionBackward(p, q, k, v, cache, probe, segments, shape, dq, dk, dv);
    checkInputGradient(q, forward, dq);
    checkInputGradient(k, forward, dk);
    checkInputGradient(v, forward, dv);
  });

  it("attention with gemma's scale, soft-capped scores and a sliding window", () => {
    const shape = { heads: 2, kvHeads: 1, headDim: 4, attentionScale: 0.3, attentionSoftcap: 1.5, window: 3 };
    const segments = { starts: Int32Array.from([0, 6, 8]) };
    const rows = 8;
    const q = randomVec(rows * 8, 2),
      k = randomVec(rows * 4, 2),
      v = randomVec(rows * 4),
      probe = randomVec(rows * 8);
    const forward = () => {
      const out = p.alloc(rows * 8);
      attentionForward(p, q, k, v, segments, shape, out);
      return dot(out, probe);
    };
    const out = p.alloc(rows * 8);
    const cache = attentionForward(p, q, k, v, segments, shape, out);
    // The window hides keys more than 2 positions back; soft-capping bounds every score by the cap.
    expect(cache[0]![5 * 6 + 2]).toBe(0);
    expect(cache[0]![5 * 6 + 3]).toBeGreaterThan(0);
    const dq = p.alloc(q.length),
      dk = p.alloc(k.length),
      dv = p.alloc(v.length);
    attentionBackward(p, q, k, v, cache, probe, segments, shape, dq, dk, dv);
    checkInputGradient(q, forward, dq);
    checkInputGradient(k, forward, dk);
    checkInputGradient(v, forward, dv);
  });

  it("geglu (tanh GELU) and logit soft-capping", () => {
    const g = randomVec(12, 2),
      u = randomVec(12),
      probe = randomVec(12);
    const forward = () => {
      const h = p.alloc(12);
      gegluForward(g, u, h, false);
      return dot(h, probe);
    };
    const dg = p.alloc(12),
      du = p.alloc(12);
    gegluBackward(g, u, probe, dg, du, false);
    checkInputGradient(g, forward, dg);
    checkInputGradient(u, forward, du);
    const z = randomVec(10, 4);
    const capped = () => {
      const y = Float64Array.from(z);
      softcapForward(y, 2.5);
      return dot(y, probe);
    };
    const y = Float64Array.from(z);
    softcapForward(y, 2.5);
    const dz = Float64Array.from(probe.subarray(0, 10));
    softcapBackward(dz, y, 2.5);
    checkInputGradient(z, capped, dz);
  });

  it("swiglu", () => {
    const g = randomVec(12, 2),
      u = randomVec(12),
      probe = randomVec(12);
    const forward = () => {
      const h = p.alloc(12);
      swigluForward(g, u, h);
      return dot(h, probe);
    };
    const dg = p.alloc(12),
      du = p.alloc(12);
    swigluBackward(g, u, probe, dg, du);
    checkInputGradient(g, forward, dg);
    checkInputGradient(u, forward, du);
  });

  it("masked, weighted cross-entropy", () => {
    const rows = 3,
      vocab = 5;
    const logits = randomVec(rows * vocab, 2);
    const targets = Int32Array.from([1, 4, 0]);
    const weights = Float64Array.from([0.5, 0, 0.25]);
    const forward = () => crossEntropy(logits, targets, weights, rows, vocab, undefined);
    const d = p.alloc(rows * vocab);
    crossEntropy(logits, targets, weights, rows, vocab, d);
    checkInputGradient(logits, forward, d);
  });
});

describe("every LoRA gradient of the whole model equals finite differences (float64)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "trainer-grad-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const variants: Array<{ name: string; model: TinyModelOptions; checkpoint: boolean; dropout: number }> = [
    { name: "llama, GQA, checkpointed, dropout", model: { architecture: "llama" }, checkpoint: true, dropout: 0.3 },
    { name: "qwen2 (NeoX, bias), no checkpoint", model: { architecture: "qwen2" }, checkpoint: false, dropout: 0 },
    {
      name: "qwen3 (q/k norms, heads wider than the model), checkpointed",
      model: { architecture: "qwen3", heads: 2, kvHeads: 1, headDim: 12 },
      checkpoint: true,
      dropout: 0,
    },
    {
      name: "phi3 (fused q/k/v and gate/up split at load), checkpointed",
      model: { architecture: "phi3" },
      checkpoint: true,
      dropout: 0,
    },
    {
      name: "gemma2 (scaled embeddings, post-norms, soft-caps, GeGLU, sliding window), dropout",
      model: {
        architecture: "gemma2",
        heads: 2,
        kvHeads: 1,
        headDim: 12,
        extras: { slidingWindow: 3, attentionSoftcap: 2, finalSoftcap: 3 },
      },
      checkpoint: true,
      dropout: 0.2,
    },
    {
      name: "gemma3 (q/k norms, post-norms, global and sliding layers with their own RoPE base), no checkpoint",
      model: {
        architecture: "gemma3",
        extras: { slidingWindow: 3, slidingWindowPattern: 2, ropeFreqBaseSwa: 100, finalSoftcap: 4 },
      },
      checkpoint: false,
      dropout: 0,
    },
  ];
  for (const variant of variants) {
    it(variant.name, async () => {
      const path = join(dir, `${variant.model.architecture}.gguf`);
      await writeTinyModel(path, {
        dim: 16,
        heads: 4,
        kvHeads: 2,
        ffn: 24,
        layers: 2,
        seed: 11,
        ...variant.model,
      });
      const model = new LlamaTrainModel(await loadLlamaModel(path), p);
      const lora = createLora(model.config, { rank: 2, alpha: 3, targets: loraTargets, seed: 1, alloc: p.alloc });
      for (const m of lora.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal() * 0.3;
      const seqs = [
        [1, 60, 61, 62, 63, 64],
        [1, 70, 71, 72],
      ];
      const tokens = seqs.flat();
      const batch: TrainBatch = {
        tokens: Int32Array.from(tokens),
        positions: Int32Array.from(seqs.flatMap((s) => s.map((_, i) => i))),
        segments: { starts: Int32Array.from([0, 6, 10]) },
        targets: Int32Array.from(tokens, (_, i) => (i * 13 + 5) % 354),
        weights: Float64Array.from(tokens, (_, i) => ([2, 3, 4, 8, 9].includes(i) ? 0.2 : 0)),
      };
      const options = { checkpoint: variant.checkpoint, dropout: variant.dropout, dropoutSeed: 9 };
      const grads = zerosLike(lora, p.alloc);
      const loss = model.lossAndGradient(batch, lora, grads, options);
      expect(loss).toBeGreaterThan(0);
      const f = () => model.lossAndGradient(batch, lora, undefined, options);
      expect(f()).toBe(loss);
      let checked = 0;
      for (let mi = 0; mi < lora.modules.length; mi++) {
        const m = lora.modules[mi]!;
        const g = grads.modules[mi]!;
        for (const [param, grad] of [
          [m.a, g.a],
          [m.b, g.b],
        ] as const) {
          let nonZero = 0;
          for (let i = 0; i < param.length; i++) {
            const numeric = finiteDifference(f, param, i);
            expectClose(grad[i]!, numeric, 1e-5, 1e-9);
            if (Math.abs(numeric) > 1e-6) nonZero++;
            checked++;
          }
          expect(nonZero).toBeGreaterThan(0);
        }
      }
      expect(checked).toBe(lora.modules.reduce((sum, m) => sum + m.a.length + m.b.length, 0));
    });
  }
});
