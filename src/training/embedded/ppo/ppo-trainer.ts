/**
 * Embedded PPO (method-spec B.5) on small models: each step samples responses from the current policy on llama.cpp,
 * has the caller reward them, computes log-probs under the policy and the frozen reference and the value model's
 * values on the trainer, shapes per-token rewards (KL penalty on every token, the sequence reward at the response's
 * true last token), runs GAE, whitens the advantages and takes clipped policy and value steps. Seeded throughout;
 * a checkpoint after every step (atomic, kill -9 safe) resumes to the curve an uninterrupted run draws. The policy
 * is exported like every training: a GGUF LoRA and a PEFT adapter.
 */
import { createHash } from "node:crypto";
import { appendFile, mkdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { AbortedError, ConfigError } from "../../../errors/index.js";
import type { ProgressListener } from "../../../progress/progress-event.js";
import { mulberry32 } from "../../../random/mulberry32.js";
import { writeJsonLines } from "../../../run-store/json-file.js";
import { writeGgufLora } from "../../export/gguf-lora.js";
import { writePeftAdapter } from "../../export/peft-adapter.js";
import { learningRateAt } from "../adamw.js";
import { adapterHash, copyAdapter, loadAdapter } from "../adapter-source.js";
import {
  fingerprintDifferences,
  loadCheckpointArrays,
  readCheckpointState,
  restoreSetAside,
  saveCheckpoint,
  setAsideCheckpoint,
} from "../checkpoint.js";
import { fileIdentity } from "../embedded-trainer.js";
import { createKernel } from "../kernels/index.js";
import { hashSeed, LlamaTrainModel } from "../llama-train-model.js";
import { loadLlamaModel, readLlamaModelConfig } from "../llama-weights.js";
import { createLora, type LoraAdapter } from "../lora.js";
import { kernelPrecision } from "../precision.js";
import { type ScoredSequence, sequenceLogProbs } from "../sequence-log-probs.js";
import { gae, tokenRewards, whiten } from "./ppo-math.js";
import { type PpoOptions, ppoOptionsSchema, ppoUnfingerprinted } from "./ppo-options.js";
import { PolicySampler } from "./ppo-rollout.js";
import { PpoLearner, type PpoStepResult, tokenValues, type ValueModel, valueModelFromReward } from "./ppo-step.js";

/** A prompt to roll out: its id and the policy's full prompt text (template applied). */
export interface PpoPrompt {
  id: string;
  prompt: string;
}

export interface PpoRollout<P extends PpoPrompt = PpoPrompt> {
  prompt: P;
  /** Position in the step's batch. */
  index: number;
  step: number;
  /** BOS + prompt tokens. */
  promptTokens: number;
  /** Response tokens sampled (the stop's own tokens included). */
  responseTokens: number;
  /** The response before its stop string. */
  text: string;
  /** Reached a stop string or end-of-sequence within the token limit. */
  stopped: boolean;
}

/** The caller's reward of one rollout: the sequence reward and, for the records and the curve, its parts. */
export interface PpoReward {
  reward: number;
  /** Numeric parts (averaged into the curve) and anything else a record should keep. */
  parts?: Record<string, number>;
  details?: Record<string, unknown>;
  /** Tokens the reward model read. */
  rewardTokens?: number;
}

/** One point of the curve (one PPO step), written to ppo.jsonl. */
export interface PpoCurvePoint {
  step: number;
  /** Mean sequence reward (before rewardScale). */
  reward: number;
  /** Mean over responses of Σ_t (log π − log π_ref): the KL estimate to the reference. */
  kl: number;
  /** Mean over responses of the penalised per-token KL (clamped at 0 unless klClamp is off), summed. */
  klPenalty: number;
  /** Mean response length in tokens. */
  responseLength: number;
  /** Share of responses that stopped. */
  stopRate: number;
  policyLoss: number;
  valueLoss: number;
  clipFraction: number;
  approxKl: number;
  /** Mean entropy (nats) of the policy's next-token distributions over the response tokens, before the update. */
  entropy: number;
  learningRate: number;
  /** Means of the reward's parts. */
  parts: Record<string, number>;
  /** Wall time of the step's phases (not part of the numbers a resume reproduces). */
  seconds: { rollout: number; reward: number; update: number };
}

export interface PpoStepReport<P extends PpoPrompt> {
  step: number;
  rollouts: Array<PpoRollout<P> & PpoReward & { kl: number }>;
  point: PpoCurvePoint;
}

export interface RunPpoOptions<P extends PpoPrompt> {
  /** The base GGUF. */
  base: string;
  /** ppo.jsonl, checkpoint/, adapter.gguf, peft/. */
  output: string;
  prompts: readonly P[];
  /** Rewards of one step's rollouts, in order. */
  reward(rollouts: readonly PpoRollout<P>[], signal?: AbortSignal): Promise<PpoReward[]>;
  options?: Partial<PpoOptions>;
  seed: number;
  /** The SFT adapter the policy starts from, and the frozen reference (default: a fresh LoRA; the base). */
  policyAdapter?: string;
  /** A reward model folder (its LoRA, and head) the value model starts from (default: a fresh LoRA, zero head). */
  valueFrom?: string;
  /** After each step's rollouts are rewarded and before its checkpoint (records go here). */
  onStep?(report: PpoStepReport<P>): Promise<void>;
  /** Prompts left out as longer than queryLength. */
  onDropped?(prompt: P, tokens: number): Promise<void>;
  /** Resume from `<output>/checkpoint`. Default true. */
  resume?: boolean;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface PpoResult {
  adapterPath: string;
  peftDir: string;
  steps: number;
  curve: PpoCurvePoint[];
  /** Prompts left out as too long. */
  dropped: number;
}

interface PpoCheckpointState {
  version: 1;
  kind: "ppo";
  step: number;
  totalSteps: number;
  fingerprint: Record<string, unknown>;
  curve: PpoCurvePoint[];
  optimizerSteps: number;
  learnerUpdates: number;
}

const isPpoState = (state: unknown): state is PpoCheckpointState =>
  typeof state === "object" && state !== null && (state as { kind?: unknown }).kind === "ppo";

/** A seeded permutation of 0..n-1. */
function shuffled(n: number, seed: number): number[] {
  const random = mulberry32(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

const mean = (values: readonly number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0);

export async function runPpo<P extends PpoPrompt>(run: RunPpoOptions<P>): Promise<PpoResult> {
  const o = ppoOptionsSchema.parse(run.options ?? {});
  const emit: ProgressListener = run.onProgress ?? (() => {});
  const config = await readLlamaModelConfig(run.base, { checkTensorTypes: true });
  const init = run.policyAdapter === undefined ? undefined : await loadAdapter(run.policyAdapter, config);
  const policy: LoraAdapter =
    init?.adapter ??
    createLora(config, {
      rank: o.rank,
      alpha: o.alpha,
      targets: o.targets,
      seed: run.seed,
      alloc: (n) => new Float32Array(n),
    });
  // The reference is the policy PPO starts from: the SFT adapter, or the base when there is none.
  const reference = init ? copyAdapter(init.adapter) : undefined;
  const rewardModel = run.valueFrom === undefined ? undefined : await loadAdapter(run.valueFrom, config);
  const value: ValueModel = rewardModel
    ? valueModelFromReward(rewardModel, config.dim, o.valueHead)
    : {
        lora: createLora(config, {
          rank: o.rank,
          alpha: o.alpha,
          targets: o.targets,
          seed: hashSeed(run.seed, 1),
          alloc: (n) => new Float32Array(n),
        }),
        head: new Float32Array(config.dim),
      };

  await mkdir(run.output, { recursive: true });
  const sampler = await PolicySampler.open(run.base, join(run.output, "rollout"), config, {
    contextSize: o.queryLength + o.responseLength + 1,
    threads: o.rolloutThreads,
  });
  const kernel = createKernel(o.kernel, { ...(o.threads ? { threads: o.threads } : {}) });
  try {
    // Prompts longer than queryLength are left out (B.5), in their original order.
    const prompts: Array<{ prompt: P; tokens: number[] }> = [];
    let dropped = 0;
    for (const prompt of run.prompts) {
      const tokens = await sampler.tokenize(prompt.prompt);
      if (tokens.length > o.queryLength) {
        dropped++;
        await run.onDropped?.(prompt, tokens.length);
      } else prompts.push({ prompt, tokens });
    }
    if (prompts.length === 0)
      throw new ConfigError(
        `no prompt fits in queryLength ${o.queryLength} tokens (${dropped} left out); raise queryLength or give shorter prompts`,
        { field: "queryLength" },
      );
    const totalSteps = o.maxSteps ?? Math.max(1, Math.floor((o.epochs * prompts.length) / o.rolloutBatch));
    const updatesPerStep = o.ppoEpochs * Math.ceil(o.rolloutBatch / o.stepBatch);
    const totalUpdates = totalSteps * updatesPerStep;

    const fingerprint: Record<string, unknown> = {
      kind: "ppo",
      base: basename(run.base),
      baseFile: await fileIdentity(run.base),
      policy: init?.hash ?? null,
      value: rewardModel ? adapterHash(rewardModel.adapter, rewardModel.head) : null,
      prompts: textsHash(prompts.flatMap((p) => [p.prompt.id, p.prompt.prompt])),
      seed: run.seed,
      ...Object.fromEntries(Object.entries(o).filter(([k]) => !(ppoUnfingerprinted as readonly string[]).includes(k))),
    };

    const base = await loadLlamaModel(run.base, (n) => kernel.alloc(n));
    const model = new LlamaTrainModel(base, kernelPrecision(kernel));
    const learner = new PpoLearner(model, policy, value, {
      learningRate: o.learningRate,
      clip: o.clip,
      valueClip: o.valueClip,
      valueCoefficient: o.valueCoefficient,
      temperature: o.temperature,
      maxGradNorm: o.maxGradNorm,
      weightDecay: o.weightDecay,
      dropout: o.dropout,
    });
    const checkpointDir = join(run.output, "checkpoint");
    const curve: PpoCurvePoint[] = [];
    let step = 0;
    if (run.resume ?? true) {
      const restored = await restorePpo(checkpointDir, fingerprint, emit);
      if (restored) {
        await loadCheckpointArrays(checkpointDir, learner.checkpointArrays());
        learner.optimizerSteps = restored.optimizerSteps;
        learner.updates = restored.learnerUpdates;
        step = restored.step;
        curve.push(...restored.curve);
        if (step > 0)
          emit({ type: "message", level: "info", text: `resuming PPO at step ${step} from ${checkpointDir}` });
      }
    }
    const curveFile = join(run.output, "ppo.jsonl");
    await writeJsonLines(curveFile, curve);
    const save = () =>
      saveCheckpoint(
        checkpointDir,
        {
          version: 1,
          kind: "ppo",
          step,
          totalSteps,
          fingerprint,
          curve,
          optimizerSteps: learner.optimizerSteps,
          learnerUpdates: learner.updates,
        } satisfies PpoCheckpointState,
        learner.checkpointArrays(),
      );

    // Each epoch visits the prompts in its own seeded order; steps take consecutive slices of the epochs.
    const orders = new Map<number, number[]>();
    const promptAt = (position: number) => {
      const epoch = Math.floor(position / prompts.length);
      let order = orders.get(epoch);
      if (!order) {
        order = shuffled(prompts.length, hashSeed(run.seed, 0x5050, epoch));
        orders.set(epoch, order);
      }
      return prompts[order[position % prompts.length]!]!;
    };

    while (step < totalSteps) {
      if (run.signal?.aborted)
        throw new AbortedError(`PPO interrupted after step ${step} of ${totalSteps}; checkpoint in ${checkpointDir}`);
      const batch = Array.from({ length: o.rolloutBatch }, (_, i) => promptAt(step * o.rolloutBatch + i));

      let started = performance.now();
      const samples = await sampler.sample(
        policy,
        step,
        batch.map((item, i) => ({ promptTokens: item.tokens, seed: hashSeed(run.seed, step, i) })),
        { temperature: o.temperature, topP: o.topP, maxTokens: o.responseLength, stop: o.stop },
        run.signal,
      );
      if (samples.length < batch.length) continue; // aborted mid-rollout: the check above throws
      const rollouts: Array<PpoRollout<P>> = samples.map((sample, i) => ({
        prompt: batch[i]!.prompt,
        index: i,
        step,
        promptTokens: batch[i]!.tokens.length,
        responseTokens: sample.tokens.length,
        text: sample.text,
        stopped: sample.stopped,
      }));
      const rolloutSeconds = (performance.now() - started) / 1000;

      started = performance.now();
      const rewards = await run.reward(rollouts, run.signal);
      if (rewards.length !== rollouts.length)
        throw new RangeError(`the reward gave ${rewards.length} rewards for ${rollouts.length} rollouts`);
      const rewardSeconds = (performance.now() - started) / 1000;

      started = performance.now();
      // Rollouts with an empty response (no room left after the prompt) score nothing and train nothing.
      const kept = rollouts.map((_, i) => i).filter((i) => samples[i]!.tokens.length > 0);
      const sequences: ScoredSequence[] = kept.map((i) => ({
        tokens: Int32Array.from([...batch[i]!.tokens, ...samples[i]!.tokens]),
        promptLength: batch[i]!.tokens.length,
      }));
      const oldLogProbs: Float64Array[] = [];
      const refLogProbs: Float64Array[] = [];
      const oldValues: Float64Array[] = [];
      for (let at = 0; at < sequences.length; at += o.scoringBatch) {
        const chunk = sequences.slice(at, at + o.scoringBatch);
        for (const s of sequenceLogProbs(model, chunk, policy, { temperature: o.temperature }))
          oldLogProbs.push(s.tokens);
        for (const s of sequenceLogProbs(model, chunk, reference, { temperature: o.temperature }))
          refLogProbs.push(s.tokens);
        oldValues.push(...tokenValues(model, value, chunk));
      }
      const kls = new Array<number>(rollouts.length).fill(0);
      const penalties = new Array<number>(rollouts.length).fill(0);
      const advantages: Float64Array[] = [];
      const returns: Float64Array[] = [];
      kept.forEach((i, k) => {
        const shaped = tokenRewards(oldLogProbs[k]!, refLogProbs[k]!, rewards[i]!.reward, o);
        kls[i] = shaped.kl;
        penalties[i] = shaped.klPenalty;
        const g = gae(shaped.rewards, oldValues[k]!, { gamma: o.gamma, lambda: o.lambda });
        advantages.push(g.advantages);
        returns.push(g.returns);
      });
      if (o.whitenAdvantages && kept.length > 0) {
        const white = whiten(advantages.flatMap((a) => Array.from(a)));
        let at = 0;
        for (const a of advantages) {
          a.set(white.subarray(at, at + a.length));
          at += a.length;
        }
      }

      const results: PpoStepResult[] = [];
      let learningRate = 0;
      for (let epoch = 0; epoch < o.ppoEpochs && kept.length > 0; epoch++) {
        const order = shuffled(kept.length, hashSeed(run.seed, step, epoch, 0x7070));
        for (let at = 0; at < order.length; at += o.stepBatch) {
          const picked = order.slice(at, at + o.stepBatch);
          const concat = (arrays: Float64Array[]) => Float64Array.from(picked.flatMap((k) => Array.from(arrays[k]!)));
          learningRate = learningRateAt(learner.optimizerSteps, totalUpdates, o.learningRate, o.warmupSteps, "cosine");
          results.push(
            learner.step(
              {
                sequences: picked.map((k) => sequences[k]!),
                oldLogProbs: concat(oldLogProbs),
                oldValues: concat(oldValues),
                advantages: concat(advantages),
                returns: concat(returns),
              },
              learningRate,
            ),
          );
        }
      }
      const updateSeconds = (performance.now() - started) / 1000;

      const partNames = [...new Set(rewards.flatMap((r) => Object.keys(r.parts ?? {})))];
      const point: PpoCurvePoint = {
        step: step + 1,
        reward: mean(rewards.map((r) => r.reward)),
        kl: mean(kls),
        klPenalty: mean(penalties),
        responseLength: mean(samples.map((s) => s.tokens.length)),
        stopRate: mean(samples.map((s) => (s.stopped ? 1 : 0))),
        policyLoss: mean(results.map((r) => r.policyLoss)),
        valueLoss: mean(results.map((r) => r.valueLoss)),
        clipFraction: mean(results.map((r) => r.clipFraction)),
        approxKl: mean(results.map((r) => r.approxKl)),
        entropy: mean(results.map((r) => r.entropy)),
        learningRate,
        parts: Object.fromEntries(partNames.map((name) => [name, mean(rewards.map((r) => r.parts?.[name] ?? 0))])),
        seconds: { rollout: rolloutSeconds, reward: rewardSeconds, update: updateSeconds },
      };
      await run.onStep?.({
        step: step + 1,
        rollouts: rollouts.map((rollout, i) => ({ ...rollout, ...rewards[i]!, kl: kls[i]! })),
        point,
      });
      step++;
      curve.push(point);
      await appendFile(curveFile, `${JSON.stringify(point)}\n`);
      await save();
      emit({
        type: "train-step",
        step,
        totalSteps,
        loss: point.policyLoss,
        learningRate,
        tokensPerSecond:
          samples.reduce((sum, s) => sum + s.tokens.length, 0) / Math.max(1e-9, rolloutSeconds + updateSeconds),
        reward: point.reward,
        kl: point.kl,
      });
    }

    const adapterPath = join(run.output, "adapter.gguf");
    const peftDir = join(run.output, "peft");
    await writeGgufLora(adapterPath, policy, config.architecture, `${basename(run.base)}-ppo-lora`, config);
    await writePeftAdapter(peftDir, policy, config, { baseModelName: basename(run.base), dropout: o.dropout });
    return { adapterPath, peftDir, steps: step, curve, dropped };
  } finally {
    kernel.dispose();
    await sampler.dispose();
  }
}

/** A short hash of strings (the prompt set of a fingerprint). */
function textsHash(items: readonly string[]): string {
  const hash = createHash("sha256");
  for (const item of items) hash.update(`${item}\u0000`);
  return `${items.length}:${hash.digest("hex").slice(0, 16)}`;
}

/**
 * The checkpoint to continue from, when one of these settings is there; one made with other settings is set aside
 * (and put back when they come again), as the trainer does.
 */
async function restorePpo(
  dir: string,
  fingerprint: Record<string, unknown>,
  emit: ProgressListener,
): Promise<PpoCheckpointState | undefined> {
  let state = await readCheckpointState(dir);
  if (state !== undefined) {
    const saved = isPpoState(state) ? state.fingerprint : { kind: (state as { kind?: unknown }).kind };
    const differences = isPpoState(state) ? fingerprintDifferences(saved, fingerprint) : ["checkpoint kind"];
    if (differences.length > 0) {
      const aside = await setAsideCheckpoint(dir, saved);
      emit({
        type: "message",
        level: "warn",
        text: `the PPO checkpoint in ${dir} was made with other settings or data (${differences.join(", ")}); it is kept in ${aside} and PPO starts afresh`,
      });
      state = undefined;
    }
  }
  if (state === undefined) {
    const source = await restoreSetAside(dir, fingerprint);
    if (source === undefined) return undefined;
    emit({
      type: "message",
      level: "info",
      text: `resuming the PPO checkpoint set aside in ${source} (same settings)`,
    });
    state = await readCheckpointState(dir);
  }
  return isPpoState(state) ? state : undefined;
}
