/**
 * Seconds per embedded PPO step (`selfalign stage salmon-rl`, trainer embedded) on the ~19M-parameter benchmark
 * model, split into rollout (llama.cpp sampling with the step's policy adapter), reward (the reward model scoring each
 * response in its reviewer prompt, on llama.cpp) and update (log-probs under policy and reference, values, and the
 * clipped policy and value steps on the embedded trainer), with each part's share and the ratio. The reward model is
 * trained for one step (its numbers do not matter, its cost does); the first PPO step is printed apart (warm-up).
 * Run: npx tsx bench/ppo-step.ts [--steps 3] [--rollouts 8] [--response-tokens 64] [--threads 2]
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runStageCommand } from "../src/cli/commands/stage.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import type { PpoCurvePoint } from "../src/training/embedded/ppo/ppo-trainer.js";
import { markerPreferences } from "../test/fixtures/toy-preferences.js";
import { numberFlag, withBenchModel } from "./lib/bench-model.js";

const steps = numberFlag("steps", 3);
const rollouts = numberFlag("rollouts", 8);
const responseTokens = numberFlag("response-tokens", 64);
const threads = numberFlag("threads", 2);

await withBenchModel("F32", async ({ path, parameterCount }) => {
  const dir = await mkdtemp(join(tmpdir(), "bench-ppo-"));
  try {
    const rewardModel = join(dir, "reward-model");
    await new EmbeddedTrainer().train({
      kind: "reward",
      base: path,
      output: rewardModel,
      examples: markerPreferences(4, 1),
      options: { rank: 8, maxSteps: 1, threads, checkpointEvery: 0 },
    });
    const prompts = join(dir, "prompts.jsonl");
    const instructions = ["Write a haiku about rain.", "Name three colours.", "Add 2 and 3.", "Greet a friend."];
    await writeFile(prompts, instructions.map((instruction) => `${JSON.stringify({ instruction })}\n`).join(""));
    const run = join(dir, "run");
    const start = performance.now();
    const summary = await runStageCommand("salmon-rl", {
      run,
      trainBase: path,
      promptsPath: prompts,
      embeddedRewardModel: rewardModel,
      embeddedRolloutBatch: rollouts,
      embeddedStepBatch: Math.max(1, rollouts / 2),
      embeddedMaxSteps: steps,
      embeddedResponseLength: responseTokens,
      embeddedQueryLength: 512,
      embeddedStop: "[]",
      embeddedRank: 8,
      embeddedThreads: threads,
    });
    const wall = (performance.now() - start) / 1000;
    const curve = (await readFile(join(run, "salmon-rl", "ppo", "ppo.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as PpoCurvePoint);
    console.log(
      `model: ${(parameterCount / 1e6).toFixed(1)}M parameters (F32); ${rollouts} rollouts of ${responseTokens} tokens per step (2 PPO epochs x 2 minibatches), policy LoRA rank 8 on q,k,v,o, ${threads} trainer threads, 1 llama.cpp thread`,
    );
    console.log(`stage: ${wall.toFixed(1)} s in all (model loads and export included); ${summary.split("\n")[0]}`);
    const row = (label: string, points: PpoCurvePoint[]) => {
      const sum = (key: keyof PpoCurvePoint["seconds"]) =>
        points.reduce((s, p) => s + p.seconds[key], 0) / points.length;
      const [rollout, reward, update] = [sum("rollout"), sum("reward"), sum("update")];
      const total = rollout + reward + update;
      const share = (x: number) => `${((100 * x) / total).toFixed(0)}%`;
      console.log(
        `${label.padEnd(18)} ${total.toFixed(2).padStart(7)} s/step: rollout ${rollout.toFixed(2)} s (${share(rollout)}), reward ${reward.toFixed(2)} s (${share(reward)}), update ${update.toFixed(2)} s (${share(update)})`,
      );
      console.log(
        `${"".padEnd(18)} ratio rollout : reward : update = ${(rollout / update).toFixed(2)} : ${(reward / update).toFixed(2)} : 1; ${(points.reduce((s, p) => s + p.responseLength, 0) / points.length).toFixed(1)} response tokens on average`,
      );
    };
    row("step 1 (warm-up)", curve.slice(0, 1));
    if (curve.length > 1) row(`steps 2-${curve.length}`, curve.slice(1));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
