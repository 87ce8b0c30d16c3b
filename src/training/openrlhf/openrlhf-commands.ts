/**
 * Command lines for OpenRLHF, pinned to one version: PPO on Ray (`openrlhf.cli.train_ppo_ray`) with the reward from
 * `selfalign serve --reward-model` (`--reward.remote_url`), and the reward model and DPO on DeepSpeed
 * (`openrlhf.cli.train_rm`, `train_dpo`) on selfalign's exported pair JSONL. OpenRLHF 0.10.2 renamed every flag to a
 * dotted form (`--actor.model_name_or_path`); the names here are those of the pinned version's argparse, and
 * test/openrlhf-commands.test.ts checks them against it. Pure: nothing is run here.
 */
import { z } from "zod";

/** The OpenRLHF release the commands are written for (its flags are the same from 0.10.2 on). */
export const openRlhfVersion = "0.11.0";
/** The oldest release with the dotted flags and the remote-reward contract `selfalign serve` answers. */
export const openRlhfOldestVersion = "0.10.2";

const positive = z.number().int().positive();

/**
 * PPO settings, with SALMON's values (method-spec B.5) where OpenRLHF has the knob: sampling temperature 0.7 and
 * top-p 1, 1024 new tokens, a fixed KL coefficient 0.01 with the k1 estimator, GAE with γ = λ = 1, policy clip 0.2,
 * value clip 0.2, learning rate 2e-5, rollout batch 576, train batch 288, 2 epochs per batch, 2 passes over the
 * prompts, LoRA rank 64 / alpha 16 / dropout 0, a checkpoint every 10 steps, seed 42.
 */
export const openRlhfPpoOptionsSchema = z.strictObject({
  /** The policy OpenRLHF trains: a Hugging Face model folder or hub id (the SFT model, merged). */
  actor: z.string().min(1).describe("the policy as a Hugging Face model (the SFT model with its adapter merged)"),
  /** The reward endpoint: `selfalign serve --reward-model`'s POST /get_reward, reachable from every GPU node. */
  rewardUrl: z
    .string()
    .min(1)
    .default("http://127.0.0.1:8000/get_reward")
    .describe("POST /get_reward of selfalign serve"),
  /** The prompt JSONL (`prompt` and `label` per line). */
  prompts: z.string().min(1),
  /** Where the final actor is saved (a PEFT adapter with LoRA). */
  output: z.string().min(1),
  /** Where DeepSpeed checkpoints go. */
  checkpoints: z.string().min(1),
  nodes: positive.default(1).describe("GPU nodes of the actor (and of the critic and reference)"),
  gpusPerNode: positive.default(8),
  vllmEngines: positive.optional().describe("vLLM engines for rollouts (default: one per vllmTensorParallel GPUs)"),
  vllmTensorParallel: positive.default(1),
  /** Every model (actor, critic, reference, vLLM) shares the same GPUs, taking turns. Default true. */
  colocate: z.boolean().default(true),
  maxPromptTokens: positive.default(256).describe("B.5: query_len 256"),
  maxNewTokens: positive.default(1024).describe("B.5: response_len 1024"),
  temperature: z.number().positive().default(0.7),
  topP: z.number().positive().max(1).default(1),
  klCoefficient: z.number().min(0).default(0.01),
  policyClip: z.number().positive().default(0.2),
  valueClip: z.number().positive().default(0.2),
  actorLearningRate: z.number().positive().default(2e-5),
  criticLearningRate: z.number().positive().default(2e-5),
  rolloutBatch: positive.default(576),
  trainBatch: positive.default(288),
  microBatch: positive.default(4).describe("sequences per GPU per forward"),
  epochsPerBatch: positive.default(2).describe("B.5: noptepochs 2"),
  episodes: positive.default(2).describe("B.5: 2 passes over the prompts"),
  loraRank: z.number().int().min(0).default(64).describe("0 trains every weight"),
  loraAlpha: positive.default(16),
  loraDropout: z.number().min(0).max(1).default(0),
  zeroStage: z.union([z.literal(1), z.literal(2), z.literal(3)]).default(2),
  saveEvery: positive.default(10),
  seed: z.number().int().default(42),
});

export type OpenRlhfPpoOptions = z.infer<typeof openRlhfPpoOptionsSchema>;
export type OpenRlhfPpoOptionsInput = z.input<typeof openRlhfPpoOptionsSchema>;

/** The module and arguments of the PPO run (`python3 -m openrlhf.cli.train_ppo_ray ...`). */
export function openRlhfPpoArguments(input: OpenRlhfPpoOptionsInput): string[] {
  const o = openRlhfPpoOptionsSchema.parse(input);
  const placement = (role: "actor" | "critic" | "ref") => [
    `--${role}.num_nodes`,
    String(o.nodes),
    `--${role}.num_gpus_per_node`,
    String(o.gpusPerNode),
  ];
  const args = [
    ...placement("actor"),
    ...placement("critic"),
    ...placement("ref"),
    // Colocated, OpenRLHF wants the vLLM engines to cover exactly the actor's GPUs.
    "--vllm.num_engines",
    String(o.vllmEngines ?? Math.max(1, Math.floor((o.nodes * o.gpusPerNode) / o.vllmTensorParallel))),
    "--vllm.tensor_parallel_size",
    String(o.vllmTensorParallel),
    ...(o.colocate
      ? ["--train.colocate_all", "--vllm.enable_sleep", "--ds.enable_sleep", "--vllm.gpu_memory_utilization", "0.5"]
      : []),
    "--actor.model_name_or_path",
    o.actor,
    "--reward.remote_url",
    o.rewardUrl,
    "--data.prompt_dataset",
    o.prompts,
    "--data.input_key",
    "prompt",
    "--data.label_key",
    "label",
    "--data.max_len",
    String(o.maxPromptTokens + o.maxNewTokens),
    "--rollout.max_new_tokens",
    String(o.maxNewTokens),
    "--rollout.temperature",
    String(o.temperature),
    "--rollout.top_p",
    String(o.topP),
    "--rollout.batch_size",
    String(o.rolloutBatch),
    "--rollout.micro_batch_size",
    String(o.microBatch),
    "--rollout.n_samples_per_prompt",
    "1",
    "--train.batch_size",
    String(o.trainBatch),
    "--train.micro_batch_size",
    String(o.microBatch),
    "--train.max_epochs",
    String(o.epochsPerBatch),
    "--train.num_episodes",
    String(o.episodes),
    "--train.seed",
    String(o.seed),
    "--algo.advantage.estimator",
    "gae",
    "--algo.advantage.gamma",
    "1",
    "--algo.advantage.lambd",
    "1",
    "--algo.kl.init_coef",
    String(o.klCoefficient),
    "--algo.kl.estimator",
    "k1",
    "--actor.eps_clip",
    String(o.policyClip),
    "--critic.value_clip",
    String(o.valueClip),
    "--actor.adam.lr",
    String(o.actorLearningRate),
    "--critic.adam.lr",
    String(o.criticLearningRate),
    "--ds.zero_stage",
    String(o.zeroStage),
    "--ds.param_dtype",
    "bf16",
    "--actor.gradient_checkpointing_enable",
    "--ckpt.output_dir",
    o.output,
    "--ckpt.path",
    o.checkpoints,
    "--ckpt.save_steps",
    String(o.saveEvery),
  ];
  if (o.loraRank > 0) {
    args.push(
      "--ds.lora.rank",
      String(o.loraRank),
      "--ds.lora.alpha",
      String(o.loraAlpha),
      "--ds.lora.dropout",
      String(o.loraDropout),
    );
  }
  return ["-m", "openrlhf.cli.train_ppo_ray", ...args];
}

/** Settings of OpenRLHF's reward-model and DPO trainers on a pair JSONL with `prompt`, `chosen`, `rejected`. */
export const openRlhfPairOptionsSchema = z.strictObject({
  /** The model to train from: a Hugging Face folder or hub id (for DPO, the SFT model merged). */
  model: z.string().min(1),
  /** The pair JSONL (reward-pairs.jsonl for train_rm, preferences.jsonl for train_dpo). */
  dataset: z.string().min(1),
  output: z.string().min(1),
  /** B.4's fine-tuning: 1280 tokens (query 128 + response 768 + the reviewer prompt's text). */
  maxLength: positive.default(1280),
  learningRate: z.number().positive().default(3e-5),
  batchSize: positive.default(64),
  microBatch: positive.default(1),
  epochs: positive.default(1),
  loraRank: z.number().int().min(0).default(64),
  loraAlpha: positive.default(16),
  zeroStage: z.union([z.literal(1), z.literal(2), z.literal(3)]).default(2),
  /** DPO only. */
  beta: z.number().positive().default(0.1),
  labelSmoothing: z.number().min(0).max(0.5).default(0),
  ipo: z.boolean().default(false),
});

export type OpenRlhfPairOptionsInput = z.input<typeof openRlhfPairOptionsSchema>;

/**
 * `deepspeed --module openrlhf.cli.train_rm|train_dpo ...` on one of selfalign's pair exports. The text keys are
 * passed as they are, without --data.apply_chat_template (which expects message lists): OpenRLHF joins prompt and
 * response with no separator, and selfalign's exports are split so the join is the whole text.
 */
export function openRlhfPairArguments(kind: "reward" | "dpo", input: OpenRlhfPairOptionsInput): string[] {
  const o = openRlhfPairOptionsSchema.parse(input);
  const args = [
    "--model.model_name_or_path",
    o.model,
    "--data.dataset",
    o.dataset,
    "--data.prompt_key",
    "prompt",
    "--data.chosen_key",
    "chosen",
    "--data.rejected_key",
    "rejected",
    "--data.max_len",
    String(o.maxLength),
    "--train.batch_size",
    String(o.batchSize),
    "--train.micro_batch_size",
    String(o.microBatch),
    "--train.max_epochs",
    String(o.epochs),
    "--adam.lr",
    String(o.learningRate),
    "--ds.zero_stage",
    String(o.zeroStage),
    "--ds.param_dtype",
    "bf16",
    "--model.gradient_checkpointing_enable",
    "--ckpt.output_dir",
    o.output,
  ];
  if (o.loraRank > 0) args.push("--ds.lora.rank", String(o.loraRank), "--ds.lora.alpha", String(o.loraAlpha));
  if (kind === "dpo") {
    args.push("--model.beta", String(o.beta));
    if (o.ipo) args.push("--model.ipo_enable");
    else if (o.labelSmoothing > 0) args.push("--model.label_smoothing", String(o.labelSmoothing));
  }
  return ["--module", kind === "reward" ? "openrlhf.cli.train_rm" : "openrlhf.cli.train_dpo", ...args];
}

/** `python3 -m openrlhf.cli.lora_combiner`: a PEFT adapter merged into its base, saved as a whole model. */
export function openRlhfMergeArguments(base: string, adapter: string, output: string, reward = false): string[] {
  return [
    "-m",
    "openrlhf.cli.lora_combiner",
    "--model_path",
    base,
    "--lora_path",
    adapter,
    "--output_path",
    output,
    ...(reward ? ["--is_rm"] : []),
    "--ds.param_dtype",
    "bf16",
  ];
}
