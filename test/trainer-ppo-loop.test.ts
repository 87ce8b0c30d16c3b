/**
 * Embedded PPO end to end on a tiny random-weight model, rollouts on llama.cpp: the per-token reward shaping against
 * numbers worked out by hand (the sequence reward at the true last token, the KL clamp); on a toy task with a known
 * reward the mean reward rises over a few dozen steps while the KL to the reference stays bounded, and the exported
 * adapter loads in llama.cpp; a run killed with kill -9 between steps resumes to the uninterrupted run's curve.
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { BYTE_VOCAB_SIZE, writeTinyModel } from "../src/gguf/index.js";
import { gae, tokenRewards } from "../src/training/embedded/ppo/ppo-math.js";
import type { PpoCurvePoint } from "../src/training/embedded/ppo/ppo-trainer.js";
import { runToyPpo, toyResponseLength } from "./fixtures/ppo-toy.js";
import { killWhen } from "./fixtures/kill-when.js";

let dir: string;
let base: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-ppo-loop-"));
  base = join(dir, "m.gguf");
  await writeTinyModel(base, { seed: 5, contextLength: 256 });
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("reward shaping", () => {
  it("puts the sequence reward on the last real token and penalises the clamped KL on every token", () => {
    // log π − log π_ref = [0.5, −0.3, 0.2]: clamped [0.5, 0, 0.2]; coefficient 0.1; sequence reward 2.
    const shaped = tokenRewards([-1, -2, -0.5], [-1.5, -1.7, -0.7], 2, { klCoefficient: 0.1, klClamp: true });
    for (const [t, r] of [-0.05, 0, 2 - 0.02].entries()) expect(shaped.rewards[t]).toBeCloseTo(r, 12);
    expect(shaped.kl).toBeCloseTo(0.4, 12);
    expect(shaped.klPenalty).toBeCloseTo(0.7, 12);
    // Unclamped, the negative log-ratio is a bonus; a reward scale multiplies the sequence reward only.
    const plain = tokenRewards([-1, -2, -0.5], [-1.5, -1.7, -0.7], 2, {
      klCoefficient: 0.1,
      klClamp: false,
      rewardScale: 10,
    });
    for (const [t, r] of [-0.05, 0.03, 20 - 0.02].entries()) expect(plain.rewards[t]).toBeCloseTo(r, 12);
    // With SALMON's γ = λ = 1 every token's advantage is the reward-to-go minus its value.
    const { advantages } = gae(shaped.rewards, [0.1, 0.2, 0.3], { gamma: 1, lambda: 1 });
    for (const [t, a] of [-0.05 + 0 + 1.98 - 0.1, 1.98 - 0.2, 1.98 - 0.3].entries())
      expect(advantages[t]).toBeCloseTo(a, 12);
  });
});

const meanOf = (points: PpoCurvePoint[], key: "reward" | "kl") =>
  points.reduce((sum, p) => sum + p[key], 0) / points.length;

describe("embedded PPO on a toy task", () => {
  it("raises the mean reward over 30 steps while the KL to the reference stays bounded; the adapter loads in llama.cpp", async () => {
    const out = join(dir, "toy");
    const result = await runToyPpo(base, out, 30);
    expect(result.steps).toBe(30);
    const { curve } = result;
    expect(curve.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const first = meanOf(curve.slice(0, 5), "reward");
    const last = meanOf(curve.slice(-5), "reward");
    // Letters are ~7% of the byte vocabulary: the untrained policy scores ~0.03.
    expect(first).toBeLessThan(0.12);
    expect(last).toBeGreaterThan(first + 0.15);
    // The policy starts at the reference (KL 0) and moves away, but the penalty keeps it within ~2 nats a token.
    expect(curve[0]!.kl).toBeCloseTo(0, 6);
    expect(curve.some((p) => p.kl > 1)).toBe(true);
    for (const point of curve) {
      expect(point.kl / Math.max(1, point.responseLength)).toBeLessThan(2.5);
      expect(point.klPenalty).toBeGreaterThanOrEqual(point.kl - 1e-9);
      expect(point.responseLength).toBeLessThanOrEqual(toyResponseLength);
      // The policy's entropy is logged every step: positive and at most that of a uniform next token.
      expect(point.entropy).toBeGreaterThan(0);
      expect(point.entropy).toBeLessThanOrEqual(Math.log(BYTE_VOCAB_SIZE) + 1e-9);
    }
    const lines = (await readFile(join(out, "ppo.jsonl"), "utf8")).trim().split("\n");
    expect(lines.map((line) => JSON.parse(line) as PpoCurvePoint)).toEqual(curve);

    // The trained policy, as llama.cpp runs it, writes more letters than the base.
    const letters = (text: string) => [...text].filter((c) => c >= "a" && c <= "z").length;
    const sample = async (lora: boolean) => {
      const backend = await createLlamaCppBackend({
        model: base,
        contextSize: 256,
        threads: 1,
        ...(lora ? { lora: [{ path: result.adapterPath }] } : {}),
      });
      try {
        let count = 0;
        for await (const r of backend.complete(
          Array.from({ length: 8 }, (_, i) => ({
            prompt: `Q: ${"abcdefgh"[i]}?\nA:`,
            temperature: 0.7,
            maxTokens: toyResponseLength,
            seed: 100 + i,
          })),
        ))
          count += letters(r.completions[0]!.text);
        return count;
      } finally {
        await backend.close();
      }
    };
    expect(await sample(true)).toBeGreaterThan(2 * (await sample(false)));
    expect((await stat(join(result.peftDir, "adapter_model.safetensors"))).size).toBeGreaterThan(0);
  }, 240_000);
});

const fixture = join(import.meta.dirname, "fixtures", "ppo-toy.ts");

async function checkpointStep(out: string): Promise<number> {
  const text = await readFile(join(out, "checkpoint", "state.json"), "utf8").catch(() => undefined);
  return text === undefined ? -1 : (JSON.parse(text) as { step: number }).step;
}

/** Run the toy PPO in a child process and kill -9 it once its checkpoint has reached `step`. */
async function killDuringPpo(out: string, steps: number, step: number): Promise<number> {
  await killWhen([fixture, base, out, String(steps)], async () => (await checkpointStep(out)) >= step, {
    what: "PPO",
  });
  return checkpointStep(out);
}

/** A curve without its wall times. */
const numbers = (curve: PpoCurvePoint[]) => curve.map(({ seconds: _, ...rest }) => rest);

describe("embedded PPO, killed", () => {
  it("kill -9 between steps, then resume: the same curve and adapter as an uninterrupted run", async () => {
    const whole = await runToyPpo(base, join(dir, "whole"), 8, { kernel: "ts" });
    const interrupted = join(dir, "killed");
    const at = await killDuringPpo(interrupted, 8, 3);
    expect(at).toBeGreaterThanOrEqual(3);
    expect(at).toBeLessThan(8);
    const resumed = await runToyPpo(base, interrupted, 8, { kernel: "ts" });
    expect(numbers(resumed.curve)).toEqual(numbers(whole.curve));
    // The policy moved (the curve is not flat), and the resumed one ends at the same weights.
    expect(new Set(whole.curve.map((p) => p.reward.toFixed(6))).size).toBeGreaterThan(1);
    expect(await readFile(join(interrupted, "adapter.gguf"))).toEqual(
      await readFile(join(dir, "whole", "adapter.gguf")),
    );
  }, 240_000);
});
