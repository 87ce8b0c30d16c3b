/**
 * PPO's building blocks: GAE and whitening against numbers worked out by hand; the clipped policy and value losses'
 * gradients against finite differences, alone and through the model (float64); the value model initialised from a
 * reward model; a learner step that moves log-probs and values the way the advantages and returns say; and the
 * policy entropy it logs, against -Σ p log p computed here from the model's own logits.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededNormal, writeTinyModel } from "../src/gguf/index.js";
import type { LoadedAdapter } from "../src/training/embedded/adapter-source.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { createLora, type LoraAdapter, loraArrays, zerosLike } from "../src/training/embedded/lora.js";
import { packWhole, rewardLoss } from "../src/training/embedded/objectives/reward-objective.js";
import { float64Precision, tokenEntropies, type Vec } from "../src/training/embedded/ops.js";
import { clippedPolicyLoss, clippedValueLoss, gae, whiten } from "../src/training/embedded/ppo/ppo-math.js";
import {
  PpoLearner,
  policyLoss,
  tokenValues,
  valueLoss,
  valueModelFromReward,
} from "../src/training/embedded/ppo/ppo-step.js";
import { packSequences, type ScoredSequence, sequenceLogProbs } from "../src/training/embedded/sequence-log-probs.js";
import { checkGradients, expectClose, finiteDifference } from "./fixtures/finite-differences.js";

const normal = seededNormal(77);

describe("GAE and whitening", () => {
  it("equal the values worked out by hand", () => {
    // rewards r = [0, 0.5, 1], values V = [0.2, 0.4, 0.1], γ = 0.9, λ = 0.5 (γλ = 0.45), V after the end = 0:
    //   δ2 = 1 − 0.1 = 0.9                 A2 = 0.9
    //   δ1 = 0.5 + 0.9·0.1 − 0.4 = 0.19     A1 = 0.19 + 0.45·0.9 = 0.595
    //   δ0 = 0 + 0.9·0.4 − 0.2 = 0.16       A0 = 0.16 + 0.45·0.595 = 0.42775
    //   returns = A + V = [0.62775, 0.995, 1.0]
    const { advantages, returns } = gae([0, 0.5, 1], [0.2, 0.4, 0.1], { gamma: 0.9, lambda: 0.5 });
    for (const [i, a] of [0.42775, 0.595, 0.9].entries()) expect(advantages[i]).toBeCloseTo(a, 12);
    for (const [i, r] of [0.62775, 0.995, 1.0].entries()) expect(returns[i]).toBeCloseTo(r, 12);
    // SALMON's γ = λ = 1: the advantage is the reward-to-go minus the value.
    const salmon = gae([0, 0, 2], [0.5, 1, 1.5], { gamma: 1, lambda: 1 });
    expect(Array.from(salmon.advantages)).toEqual([1.5, 1, 0.5]);
    // Whitening A: mean 0.6409166…, population variance 0.0382241805…, so A0 → −0.2131667 / 0.1955101 = −1.0903104.
    const white = whiten(advantages);
    for (const [i, w] of [-1.0903104, -0.2348558, 1.3251661].entries()) expect(white[i]).toBeCloseTo(w, 6);
    const kept = whiten(advantages, { shiftMean: false });
    expect(kept[0]! - white[0]!).toBeCloseTo(0.6409166667, 9);
    // Bessel-corrected: the variance is 3/2 as large, each value 1/sqrt(1.5) as far from 0.
    expect(whiten(advantages, { unbiased: true })[2]).toBeCloseTo(1.3251661 / Math.sqrt(1.5), 6);
  });
});

describe("clipped losses", () => {
  it("policy: clipped where the ratio left [1 − ε, 1 + ε] in the advantage's direction; gradient = finite differences", () => {
    const old = Float64Array.from([-1, -2, -0.5, -3, -1.5]);
    // Ratios e^0.3 (above 1.2, A > 0: clipped), e^-0.3 (below 0.8, A < 0: clipped), e^0.1, e^-0.4 with A > 0
    // (unclipped: the ratio moved against the advantage), 1.
    const logProbs = Float64Array.from([-0.7, -2.3, -0.4, -3.4, -1.5]);
    const advantages = Float64Array.from([1, -2, 0.5, 1.5, -1]);
    const result = clippedPolicyLoss(logProbs, old, advantages, 0.2);
    expect(result.clipFraction).toBeCloseTo(2 / 5, 12);
    expect(result.dLogProbs[0]).toBe(0);
    expect(result.dLogProbs[1]).toBe(0);
    const expected = (-1 * 1.2 - -2 * 0.8 - 0.5 * Math.exp(0.1) - 1.5 * Math.exp(-0.4) - -1 * 1) / 5;
    expect(result.loss).toBeCloseTo(expected, 12);
    for (let t = 0; t < 5; t++) {
      const numeric = finiteDifference(() => clippedPolicyLoss(logProbs, old, advantages, 0.2).loss, logProbs, t);
      expectClose(result.dLogProbs[t]!, numeric, 1e-6, 1e-9);
    }
  });

  it("value: ½ max of the squared errors, clipped around the old values; gradient = finite differences", () => {
    const old = Float64Array.from([0, 1, 2, 0.5]);
    const returns = Float64Array.from([1, 0, 2.5, 0.4]);
    // V moved +0.5 toward its return (clipped to +0.2, whose error is the larger: no gradient), +0.5 away from it
    // (the plain error is the larger), and +0.1, −0.05 (inside the clip: both terms alike).
    const values = Float64Array.from([0.5, 1.5, 2.1, 0.45]);
    const result = clippedValueLoss(values, old, returns, 0.2);
    const expected = (0.5 * 0.8 ** 2 + 0.5 * 1.5 ** 2 + 0.5 * 0.4 ** 2 + 0.5 * 0.05 ** 2) / 4;
    expect(result.loss).toBeCloseTo(expected, 12);
    expect(result.clipFraction).toBeCloseTo(1 / 4, 12);
    expect(result.dValues[0]).toBe(0);
    expect(result.dValues[1]).toBeCloseTo(1.5 / 4, 12);
    for (let t = 0; t < 4; t++) {
      const numeric = finiteDifference(() => clippedValueLoss(values, old, returns, 0.2).loss, values, t);
      expectClose(result.dValues[t]!, numeric, 1e-6, 1e-9);
    }
  });
});

describe("PPO through the model", () => {
  let dir: string;
  let model: LlamaTrainModel;
  const p = float64Precision;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "trainer-ppo-"));
    const path = join(dir, "f64.gguf");
    await writeTinyModel(path, { dim: 16, heads: 4, kvHeads: 2, ffn: 24, layers: 2, seed: 23 });
    model = new LlamaTrainModel(await loadLlamaModel(path), p);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const lora = (seed: number, alloc: (n: number) => Vec = p.alloc): LoraAdapter => {
    const adapter = createLora(model.config, { rank: 2, alpha: 4, targets: ["q", "v", "down"], seed, alloc });
    for (const m of adapter.modules) for (let i = 0; i < m.b.length; i++) m.b[i] = normal() * 0.3;
    return adapter;
  };
  const responses: ScoredSequence[] = [
    { tokens: Int32Array.from([1, 70, 71, 80, 81, 82]), promptLength: 3 },
    { tokens: Int32Array.from([1, 72, 90, 91]), promptLength: 2 },
  ];

  it("policy and value losses: LoRA (and head) gradients equal finite differences at temperature 0.7", () => {
    const policy = lora(1);
    const batch = packSequences(responses);
    const n = batch.rows.length;
    // Old log-probs near the current ones, so some ratios fall inside the clip range and some outside.
    const current = sequenceLogProbs(model, responses, policy, { temperature: 0.7 }).flatMap((s) =>
      Array.from(s.tokens),
    );
    const experience = {
      oldLogProbs: Float64Array.from(current, (lp, t) => lp + [0.05, -0.4, 0.1, 0.3, -0.02][t % 5]!),
      advantages: Float64Array.from({ length: n }, () => normal()),
    };
    let clipFraction = 0;
    const output = policyLoss(batch, model.config.vocabSize, experience, 0.2, 0.7, (r) => {
      clipFraction = r.clipFraction;
    });
    const grads = zerosLike(policy, p.alloc);
    model.forwardBackward(batch, policy, grads, output);
    expect(clipFraction).toBeGreaterThan(0);
    expect(clipFraction).toBeLessThan(1);
    const f = () => model.forwardBackward(batch, policy, undefined, output);
    expect(checkGradients(f, loraArrays(policy), loraArrays(grads))).toBeGreaterThan(50);

    const value = { lora: lora(2), head: Float64Array.from({ length: model.config.dim }, () => normal()) };
    const oldValues = tokenValues(model, value, responses).flatMap((v) =>
      Array.from(v, (x, t) => x + (t % 2 ? 0.3 : -0.05)),
    );
    const returns = Float64Array.from({ length: n }, () => normal());
    const make = (headGrad?: Vec) =>
      valueLoss(batch, value.head, headGrad, (values) => {
        const r = clippedValueLoss(values, oldValues, returns, 0.2);
        return { loss: r.loss, dValues: r.dValues };
      });
    const valueGrads = zerosLike(value.lora, p.alloc);
    const headGrad = new Float64Array(value.head.length);
    model.forwardBackward(batch, value.lora, valueGrads, make(headGrad));
    const g = () => model.forwardBackward(batch, value.lora, undefined, make());
    expect(
      checkGradients(g, [...loraArrays(value.lora), value.head], [...loraArrays(valueGrads), headGrad]),
    ).toBeGreaterThan(50);
  });

  it("a value model from a reward model: its LoRA, and a zero head (values 0) or the reward head (V_t = reward of the prefix)", () => {
    const reward: LoadedAdapter = {
      adapter: lora(3, (n) => new Float32Array(n)),
      source: "test",
      hash: "test",
      head: Float32Array.from({ length: model.config.dim }, () => normal()),
    };
    const zero = valueModelFromReward(reward, model.config.dim);
    expect(loraArrays(zero.lora).map((a) => Array.from(a))).toEqual(
      loraArrays(reward.adapter).map((a) => Array.from(a)),
    );
    for (const values of tokenValues(model, zero, responses))
      expect(Array.from(values).every((v) => v === 0)).toBe(true);
    const fromHead = valueModelFromReward(reward, model.config.dim, "reward");
    const values = tokenValues(model, fromHead, [responses[0]!])[0]!;
    // The value of token t is read where token t is predicted: the reward model's reward of the prefix before it.
    const prefixes = [3, 4, 5].map((length) => ({ tokens: responses[0]!.tokens.slice(0, length) }));
    const batch = packWhole(prefixes);
    let rewards: Float64Array | undefined;
    model.forwardBackward(
      batch,
      reward.adapter,
      undefined,
      rewardLoss(batch.lastRows, reward.head!, undefined, (r) => {
        rewards = r;
        return { loss: 0, dRewards: new Float64Array(r.length) };
      }),
    );
    for (const [t, v] of values.entries()) expectClose(v, rewards![t]!, 1e-5, 1e-6);
  });

  it("the entropy a learner step logs is the mean -Σ p log p of the response tokens' distributions at temperature 0.7", () => {
    // The helper itself on rows worked out by hand: uniform over 4 is ln 4; logits (0, ln 3) at T = 1 is p = (1/4, 3/4).
    const out = new Float64Array(2);
    tokenEntropies(Float64Array.from([5, 5, 5, 5, 0, Math.log(3), -1e9, -1e9]), 2, 4, 1, out);
    expect(out[0]).toBeCloseTo(Math.log(4), 12);
    expect(out[1]).toBeCloseTo(-(0.25 * Math.log(0.25) + 0.75 * Math.log(0.75)), 9);

    const policy = lora(6, (n) => new Float32Array(n));
    const value = { lora: lora(7, (n) => new Float32Array(n)), head: new Float32Array(model.config.dim) };
    const batch = packSequences(responses);
    const vocab = model.config.vocabSize;
    let expected = 0;
    model.forwardBackward(batch, policy, undefined, {
      over: "logits",
      rows: batch.rows,
      loss: (logits) => {
        for (let t = 0; t < batch.rows.length; t++) {
          const row = Array.from({ length: vocab }, (_, j) => (logits[t * vocab + j] as number) / 0.7);
          const max = Math.max(...row);
          const z = row.reduce((sum, x) => sum + Math.exp(x - max), 0);
          expected -= row.reduce((sum, x) => {
            const p = Math.exp(x - max) / z;
            return sum + (p > 0 ? p * Math.log(p) : 0);
          }, 0);
        }
        expected /= batch.rows.length;
        return 0;
      },
    });
    const before = sequenceLogProbs(model, responses, policy, { temperature: 0.7 }).flatMap((s) =>
      Array.from(s.tokens),
    );
    const n = before.length;
    const learner = new PpoLearner(model, policy, value, { learningRate: 1e-2, temperature: 0.7 });
    const result = learner.step({
      sequences: responses,
      oldLogProbs: before,
      oldValues: new Float64Array(n),
      advantages: Float64Array.from({ length: n }, (_, t) => (t % 2 ? 1 : -1)),
      returns: new Float64Array(n),
    });
    expect(result.entropy).toBeGreaterThan(0);
    expect(result.entropy).toBeLessThanOrEqual(Math.log(vocab));
    expectClose(result.entropy, expected, 1e-6, 1e-6);
  });

  it("a learner step raises the log-probs of tokens with positive advantages and moves values toward returns", () => {
    const policy = lora(4, (n) => new Float32Array(n));
    const value = { lora: lora(5, (n) => new Float32Array(n)), head: new Float32Array(model.config.dim) };
    const before = sequenceLogProbs(model, responses, policy, { temperature: 0.7 }).flatMap((s) =>
      Array.from(s.tokens),
    );
    const oldValues = tokenValues(model, value, responses).flatMap((v) => Array.from(v));
    const n = before.length;
    // First response good, second bad.
    const advantages = Float64Array.from({ length: n }, (_, t) => (t < 3 ? 1 : -1));
    const returns = Float64Array.from({ length: n }, (_, t) => (t < 3 ? 1 : -1));
    const learner = new PpoLearner(model, policy, value, { learningRate: 1e-2, temperature: 0.7 });
    const first = learner.step({ sequences: responses, oldLogProbs: before, oldValues, advantages, returns });
    expect(first.approxKl).toBe(0);
    expect(first.clipFraction).toBe(0);
    expect(first.policyLoss).toBeCloseTo(-advantages.reduce((a, b) => a + b, 0) / n, 9);
    for (let i = 0; i < 4; i++)
      learner.step({ sequences: responses, oldLogProbs: before, oldValues, advantages, returns });
    const after = sequenceLogProbs(model, responses, policy, { temperature: 0.7 }).flatMap((s) => Array.from(s.tokens));
    const sum = (xs: number[], from: number, to: number) => xs.slice(from, to).reduce((a, b) => a + b, 0);
    expect(sum(after, 0, 3)).toBeGreaterThan(sum(before, 0, 3));
    expect(sum(after, 3, n)).toBeLessThan(sum(before, 3, n));
    const values = tokenValues(model, value, responses).flatMap((v) => Array.from(v));
    const error = (vs: number[]) => vs.reduce((s, v, t) => s + (v - returns[t]!) ** 2, 0);
    expect(error(values)).toBeLessThan(error(oldValues));
  });
});
