/**
 * The trainer's pluggable losses: a DPO-shaped loss over per-sequence log-probs and a reward loss over the final
 * hidden state, each checked against its closed form and central finite differences on the float64 path; the
 * per-sequence log-probs (with and without an adapter, with a temperature) against llama.cpp's logits.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Llama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededNormal, writeTinyModel } from "../src/gguf/index.js";
import { TsKernel } from "../src/training/embedded/kernels/ts-kernel.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { createLora, type LoraAdapter, loraArrays, loraTargets, zerosLike } from "../src/training/embedded/lora.js";
import {
  type PairLogProbs,
  preferencePairLoss,
  type ResolvedPreferenceOptions,
} from "../src/training/embedded/objectives/preference-objective.js";
import { packWhole, pairwiseLogisticLoss, rewardLoss } from "../src/training/embedded/objectives/reward-objective.js";
import { float64Precision, type Vec } from "../src/training/embedded/ops.js";
import { kernelPrecision } from "../src/training/embedded/precision.js";
import {
  logProbLoss,
  packSequences,
  type ScoredSequence,
  sequenceLogProbLoss,
  sequenceLogProbs,
} from "../src/training/embedded/sequence-log-probs.js";
import { writeGgufLora } from "../src/training/export/gguf-lora.js";
import { checkGradients, expectClose } from "./fixtures/finite-differences.js";

const p = float64Precision;
const normal = seededNormal(5);

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-objectives-"));
  llama = await getLlama({ gpu: false, build: "never" });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function randomLora(model: LlamaTrainModel, seed: number, alloc: (n: number) => Vec, scale = 0.3): LoraAdapter {
  const lora = createLora(model.config, { rank: 2, alpha: 3, targets: loraTargets, seed, alloc });
  for (const m of lora.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal() * scale;
  return lora;
}

const sequence = (tokens: number[], promptLength: number): ScoredSequence => ({
  tokens: Int32Array.from(tokens),
  promptLength,
});

/** Log-probability of tokens[promptLength..] from full logits of the sequence alone, by hand (plain float64). */
function logProbFromLogits(logits: Vec, vocab: number, s: ScoredSequence, temperature = 1): number {
  let total = 0;
  for (let t = s.promptLength - 1; t < s.tokens.length - 1; t++) {
    const row = Array.from(logits.subarray(t * vocab, (t + 1) * vocab), (v) => v / temperature);
    const max = Math.max(...row);
    const logZ = max + Math.log(row.reduce((sum, v) => sum + Math.exp(v - max), 0));
    total += row[s.tokens[t + 1]!]! - logZ;
  }
  return total;
}

function aloneLogits(model: LlamaTrainModel, s: ScoredSequence, lora?: LoraAdapter): Vec {
  return model.logits(
    {
      tokens: s.tokens,
      positions: Int32Array.from(s.tokens, (_, i) => i),
      segments: { starts: Int32Array.from([0, s.tokens.length]) },
    },
    lora,
  );
}

// Two pairs (chosen, rejected), prompts of 2 and 3 tokens, completions of different lengths.
const pairs: Array<[ScoredSequence, ScoredSequence]> = [
  [sequence([1, 60, 61, 62, 63], 2), sequence([1, 60, 61, 70], 2)],
  [sequence([1, 80, 81, 82], 3), sequence([1, 80, 81, 90, 91, 92], 3)],
];
const sequences = pairs.flat();

describe("pluggable losses through forwardBackward (float64)", () => {
  let model: LlamaTrainModel;
  beforeAll(async () => {
    const path = join(dir, "f64.gguf");
    await writeTinyModel(path, { dim: 16, heads: 4, kvHeads: 2, ffn: 24, layers: 2, seed: 11 });
    model = new LlamaTrainModel(await loadLlamaModel(path), p);
  });

  const variants: Array<{
    name: string;
    options: Pick<ResolvedPreferenceOptions, "beta" | "loss" | "labelSmoothing">;
  }> = [
    { name: "DPO", options: { beta: 0.5, loss: "sigmoid", labelSmoothing: 0 } },
    { name: "conservative DPO", options: { beta: 0.3, loss: "sigmoid", labelSmoothing: 0.2 } },
    { name: "IPO", options: { beta: 0.4, loss: "ipo", labelSmoothing: 0 } },
  ];
  for (const variant of variants) {
    it(`${variant.name}: loss equals the closed form from independent log-probs; LoRA gradient equals finite differences`, () => {
      const policy = randomLora(model, 1, p.alloc);
      const reference = randomLora(model, 2, p.alloc);
      const vocab = model.config.vocabSize;
      // Independent log-probs: each sequence alone through the full-logits path, log-softmax by hand.
      const independent = (lora: LoraAdapter) =>
        sequences.map((s) => logProbFromLogits(aloneLogits(model, s, lora), vocab, s));
      const policyLogProbs = independent(policy);
      const referenceLogProbs = independent(reference);
      // The packed per-sequence log-probs agree with them.
      sequenceLogProbs(model, sequences, reference).forEach((scored, i) => {
        expectClose(scored.total, referenceLogProbs[i]!, 1e-10, 1e-10);
        expect(scored.tokens.length).toBe(sequences[i]!.tokens.length - sequences[i]!.promptLength);
      });

      // Closed form of the mean loss over the two pairs, written out here.
      const { beta, loss: kind, labelSmoothing: e } = variant.options;
      const logSigmoid = (x: number) => -Math.log1p(Math.exp(-x));
      let expected = 0;
      pairs.forEach(([chosen, rejected], k) => {
        const lc = chosen.tokens.length - chosen.promptLength;
        const lr = rejected.tokens.length - rejected.promptLength;
        const rc = policyLogProbs[2 * k]! - referenceLogProbs[2 * k]!;
        const rr = policyLogProbs[2 * k + 1]! - referenceLogProbs[2 * k + 1]!;
        if (kind === "ipo") expected += (rc / lc - rr / lr - 1 / (2 * beta)) ** 2 / 2;
        else {
          const h = beta * (rc - rr);
          expected += (-(1 - e) * logSigmoid(h) - e * logSigmoid(-h)) / 2;
        }
      });

      const batch = packSequences(sequences);
      const referenceSums = sequenceLogProbs(model, sequences, reference).map((s) => s.total);
      const output = sequenceLogProbLoss(batch, vocab, (sums) => {
        const dSums = new Float64Array(sums.length);
        let loss = 0;
        for (let k = 0; k < pairs.length; k++) {
          const x: PairLogProbs = {
            policyChosen: sums[2 * k]!,
            policyRejected: sums[2 * k + 1]!,
            referenceChosen: referenceSums[2 * k]!,
            referenceRejected: referenceSums[2 * k + 1]!,
            chosenTokens: batch.lengths[2 * k]!,
            rejectedTokens: batch.lengths[2 * k + 1]!,
          };
          const pair = preferencePairLoss(x, variant.options);
          loss += pair.loss / pairs.length;
          dSums[2 * k] = pair.dChosen / pairs.length;
          dSums[2 * k + 1] = pair.dRejected / pairs.length;
        }
        return { loss, dSums };
      });
      const noDropout = { checkpoint: true };
      expectClose(model.forwardBackward(batch, policy, undefined, output, noDropout), expected, 1e-10, 1e-12);

      // Gradient, with LoRA dropout on (masks fixed by the seed) and no activation checkpointing.
      const options = { dropout: 0.2, dropoutSeed: 4, checkpoint: false };
      const grads = zerosLike(policy, p.alloc);
      const loss = model.forwardBackward(batch, policy, grads, output, options);
      const f = () => model.forwardBackward(batch, policy, undefined, output, options);
      expect(f()).toBe(loss);
      const nonZero = checkGradients(f, loraArrays(policy), loraArrays(grads));
      expect(nonZero).toBeGreaterThan(200);
    });
  }

  it("a per-token loss of log-probs at temperature 0.7 (PPO-shaped): gradient equals finite differences", () => {
    const policy = randomLora(model, 6, p.alloc);
    const batch = packSequences(sequences);
    const weights = Float64Array.from(batch.rows, () => normal());
    // Σ_t w_t·exp(log p_t) − 0.1·(log p_t)²: per-token, nonlinear, like a clipped PPO ratio term.
    const output = logProbLoss(
      batch,
      model.config.vocabSize,
      ({ tokens }) => {
        let loss = 0;
        const dTokens = new Float64Array(tokens.length);
        tokens.forEach((lp, t) => {
          loss += weights[t]! * Math.exp(lp) - 0.1 * lp * lp;
          dTokens[t] = weights[t]! * Math.exp(lp) - 0.2 * lp;
        });
        return { loss, dTokens };
      },
      0.7,
    );
    const grads = zerosLike(policy, p.alloc);
    model.forwardBackward(batch, policy, grads, output, { checkpoint: true });
    const f = () => model.forwardBackward(batch, policy, undefined, output, { checkpoint: true });
    expect(checkGradients(f, loraArrays(policy), loraArrays(grads))).toBeGreaterThan(200);
  });

  it("reward loss over the final normed hidden state: LoRA and head gradients equal finite differences", () => {
    const lora = randomLora(model, 3, p.alloc);
    const head = Float64Array.from({ length: model.config.dim }, () => normal());
    const batch = packWhole(sequences);
    const make = (headGrad?: Vec) =>
      rewardLoss(batch.lastRows, head, headGrad, (rewards) => pairwiseLogisticLoss(rewards, pairs.length));
    // Rewards in the packed batch equal each sequence's alone (the last real token, attention within a sequence).
    const rewardsOf = (b: ReturnType<typeof packWhole>) => {
      let captured: Float64Array | undefined;
      model.forwardBackward(
        b,
        lora,
        undefined,
        rewardLoss(b.lastRows, head, undefined, (rewards) => {
          captured = rewards;
          return { loss: 0, dRewards: new Float64Array(rewards.length) };
        }),
      );
      return captured!;
    };
    const packed = rewardsOf(batch);
    sequences.forEach((s, i) => {
      expectClose(rewardsOf(packWhole([s]))[0]!, packed[i]!, 1e-10, 1e-12);
    });
    // Closed form of the pairwise logistic loss from those rewards.
    const expected =
      pairs.reduce((sum, _, k) => sum + Math.log1p(Math.exp(-(packed[2 * k]! - packed[2 * k + 1]!))), 0) / pairs.length;
    expectClose(model.forwardBackward(batch, lora, undefined, make()), expected, 1e-10, 1e-12);

    const options = { dropout: 0.1, dropoutSeed: 8, checkpoint: true };
    const grads = zerosLike(lora, p.alloc);
    const headGrad = new Float64Array(head.length);
    model.forwardBackward(batch, lora, grads, make(headGrad), options);
    const f = () => model.forwardBackward(batch, lora, undefined, make(), options);
    const nonZero = checkGradients(f, [...loraArrays(lora), head], [...loraArrays(grads), headGrad]);
    expect(nonZero).toBeGreaterThan(200);
  });
});

describe("per-sequence log-probabilities equal llama.cpp's", () => {
  async function llamaCppLogits(path: string, tokens: Int32Array, adapter?: string): Promise<Float64Array> {
    const loaded = await llama.loadModel({ modelPath: path });
    try {
      const context = await loaded.createContext({
        contextSize: 64,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        threads: 1,
        ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
      });
      const items: ControlledEvaluateInputItem[] = Array.from(tokens, (t) => [
        t as Token,
        { generateNext: { logits: true } },
      ]);
      const results = await context.getSequence().controlledEvaluate(items);
      const out = new Float64Array(tokens.length * 354);
      results.forEach((r, t) => {
        for (const [token, value] of r!.next!.logits!) out[t * 354 + token] = value;
      });
      return out;
    } finally {
      await loaded.dispose();
    }
  }

  it("with and without an adapter, and at temperature 0.7", async () => {
    const path = join(dir, "f32.gguf");
    await writeTinyModel(path, { dim: 32, heads: 4, kvHeads: 2, ffn: 48, layers: 2, seed: 13, contextLength: 64 });
    const model = new LlamaTrainModel(await loadLlamaModel(path), kernelPrecision(new TsKernel()));
    const lora = randomLora(model, 4, (n) => new Float32Array(n), 0.2);
    const adapterPath = join(dir, "adapter.gguf");
    await writeGgufLora(adapterPath, lora, "llama");
    const scored = [
      sequence([1, 40, 41, 42, 43, 44, 45, 46], 3),
      sequence([1, 50, 51, 52, 53], 2),
      sequence([1, 60, 61, 62, 63, 64, 65], 6),
    ];
    let moved = 0;
    for (const temperature of [1, 0.7]) {
      const withAdapter = sequenceLogProbs(model, scored, lora, { temperature });
      const base = sequenceLogProbs(model, scored, undefined, { temperature });
      for (let i = 0; i < scored.length; i++) {
        const s = scored[i]!;
        const expectedWith = logProbFromLogits(await llamaCppLogits(path, s.tokens, adapterPath), 354, s, temperature);
        const expectedBase = logProbFromLogits(await llamaCppLogits(path, s.tokens), 354, s, temperature);
        expect(Math.abs(withAdapter[i]!.total - expectedWith)).toBeLessThan(1e-5);
        expect(Math.abs(base[i]!.total - expectedBase)).toBeLessThan(1e-5);
        moved = Math.max(moved, Math.abs(expectedWith - expectedBase));
        // The per-token pieces add up to the total.
        expect(withAdapter[i]!.tokens.reduce((a, b) => a + b, 0)).toBeCloseTo(withAdapter[i]!.total, 6);
      }
    }
    expect(moved).toBeGreaterThan(0.05);
  });
});
