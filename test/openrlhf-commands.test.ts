/**
 * The OpenRLHF path of SALMON's RL, checked without a GPU: the argument names of the PPO, reward-model, DPO and
 * merge command lines against OpenRLHF's own CLI at the pinned version — the flag lists below were read from
 * OpenRLHF v0.11.0's openrlhf/cli/train_ppo_ray.py, train_rm.py, train_dpo.py and lora_combiner.py (every
 * `parser.add_argument`; the same names as in v0.10.2, which introduced the dotted form) — and the exported prompt
 * file and launch script, run under bash with a stand-in `python3` that records the module calls.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commands as cliCommands } from "../src/cli/commands/index.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { parseRewardLabel } from "../src/serve/reward/openrlhf-request.js";
import { type StartServerResult, startServer } from "../src/serve/server.js";
import { chatPrompt } from "../src/stages/engrave/prompt.js";
import { exportOpenRlhfPpo, shellQuote } from "../src/stages/salmon/openrlhf-export.js";
import {
  openRlhfMergeArguments,
  openRlhfPairArguments,
  openRlhfPpoArguments,
  openRlhfVersion,
} from "../src/training/openrlhf/openrlhf-commands.js";

/** openrlhf/cli/train_ppo_ray.py at v0.11.0: every add_argument (the actor/critic optimiser loop expanded). */
const trainPpoRayFlags = [
  "--ref.num_nodes",
  "--ref.num_gpus_per_node",
  "--reward.num_nodes",
  "--reward.num_gpus_per_node",
  "--train.colocate_actor_ref",
  "--actor.num_nodes",
  "--actor.num_gpus_per_node",
  "--critic.num_nodes",
  "--critic.num_gpus_per_node",
  "--train.colocate_critic_reward",
  "--train.colocate_all",
  "--vllm.num_engines",
  "--vllm.tensor_parallel_size",
  "--vllm.sync_backend",
  "--vllm.sync_with_ray",
  "--vllm.enable_prefix_caching",
  "--vllm.enforce_eager",
  "--vllm.enable_sleep",
  "--vllm.gpu_memory_utilization",
  "--algo.advantage.is_correction_enable",
  "--algo.advantage.is_correction_threshold",
  "--algo.advantage.is_correction_type",
  "--train.async_enable",
  "--train.async_queue_size",
  "--train.partial_rollout_enable",
  "--eval.steps",
  "--ckpt.save_steps",
  "--logger.logging_steps",
  "--ckpt.path",
  "--ckpt.save_hf",
  "--ckpt.disable_ds",
  "--ckpt.max_num",
  "--ckpt.max_mem",
  "--ckpt.load_enable",
  "--ckpt.best_metric_key",
  "--ds.use_universal_ckpt",
  "--local_rank",
  "--ds.zero_stage",
  "--actor.gradient_checkpointing_enable",
  "--ds.deepcompile",
  "--ds.param_dtype",
  "--train.enable_ema",
  "--train.ema_beta",
  "--ds.zpg",
  "--ds.adam_offload",
  "--ds.attn_implementation",
  "--ds.experts_implementation",
  "--ds.use_liger_kernel",
  "--ds.grad_accum_dtype",
  "--ds.overlap_comm",
  "--actor.gradient_checkpointing_reentrant",
  "--data.disable_fast_tokenizer",
  "--data.dataloader_num_workers",
  "--ds.enable_sleep",
  "--ds.tensor_parallel_size",
  "--ds.packing_samples",
  "--train.dynamic_batch_enable",
  "--rollout.max_tokens_per_gpu",
  "--train.max_tokens_per_gpu",
  "--ds.load_in_4bit",
  "--ds.lora.rank",
  "--ds.lora.alpha",
  "--ds.lora.target_modules",
  "--ds.lora.dropout",
  "--ckpt.output_dir",
  "--train.num_episodes",
  "--rollout.batch_size",
  "--rollout.vllm_generate_batch_size",
  "--rollout.micro_batch_size",
  "--train.max_epochs",
  "--data.max_len",
  "--rollout.max_new_tokens",
  "--data.max_samples",
  "--actor.eps_clip",
  "--actor.eps_clip_low_high",
  "--actor.dual_clip",
  "--critic.value_clip",
  "--algo.advantage.lambd",
  "--algo.advantage.gamma",
  "--train.micro_batch_size",
  "--train.batch_size",
  "--reward.normalize_enable",
  "--rollout.top_p",
  "--rollout.temperature",
  "--train.seed",
  "--train.full_determinism_enable",
  "--critic.freezing_steps",
  "--rollout.n_samples_per_prompt",
  "--critic.save_value_network",
  "--algo.kl.target",
  "--algo.kl.horizon",
  "--algo.kl.init_coef",
  "--actor.policy_loss_type",
  "--algo.kl.estimator",
  "--actor.aux_loss_coef",
  "--actor.entropy_coef",
  "--reward.clip_range",
  "--actor.optim",
  "--critic.optim",
  "--actor.muon.lr",
  "--critic.muon.lr",
  "--actor.muon.momentum",
  "--critic.muon.momentum",
  "--actor.muon.ns_steps",
  "--critic.muon.ns_steps",
  "--actor.muon.nesterov",
  "--critic.muon.nesterov",
  "--actor.muon.no_nesterov",
  "--critic.muon.no_nesterov",
  "--actor.adam.lr",
  "--critic.adam.lr",
  "--actor.adam.betas",
  "--critic.adam.betas",
  "--actor.adam.eps",
  "--critic.adam.eps",
  "--actor.adam.weight_decay",
  "--critic.adam.weight_decay",
  "--actor.lr_scheduler",
  "--critic.lr_scheduler",
  "--actor.lr_warmup_ratio",
  "--critic.lr_warmup_ratio",
  "--actor.min_lr_ratio",
  "--critic.min_lr_ratio",
  "--actor.max_norm",
  "--critic.max_norm",
  "--algo.advantage.estimator",
  "--algo.kl.use_loss",
  "--algo.advantage.no_std_norm",
  "--reward.overlong_buffer_len",
  "--reward.overlong_penalty_factor",
  "--reward.stop_properly_penalty_coef",
  "--ds.ring_attn_size",
  "--ds.ring_attn_head_stride",
  "--actor.model_name_or_path",
  "--reward.model_name_or_path",
  "--reward.remote_url",
  "--critic.model_name_or_path",
  "--ds.value_head_prefix",
  "--ref.offload",
  "--reward.offload",
  "--train.agent_func_path",
  "--data.prompt_dataset",
  "--data.prompt_probs",
  "--data.prompt_split",
  "--eval.dataset",
  "--eval.split",
  "--eval.temperature",
  "--eval.n_samples_per_prompt",
  "--data.input_key",
  "--data.label_key",
  "--data.input_template",
  "--data.apply_chat_template",
  "--logger.wandb.key",
  "--logger.wandb.org",
  "--logger.wandb.group",
  "--logger.wandb.project",
  "--logger.wandb.run_name",
  "--algo.dynamic_filtering_enable",
  "--algo.dynamic_filtering_range",
  "--data.image_key",
  "--data.max_images_per_prompt",
  "--actor.freeze_visual_encoder",
  "--logger.tensorboard_dir",
  "--use_ms",
];
/** Those of them with action="store_true" (no value). */
const trainPpoRaySwitches = [
  "--train.colocate_actor_ref",
  "--train.colocate_critic_reward",
  "--train.colocate_all",
  "--vllm.sync_with_ray",
  "--vllm.enable_prefix_caching",
  "--vllm.enforce_eager",
  "--vllm.enable_sleep",
  "--algo.advantage.is_correction_enable",
  "--train.async_enable",
  "--train.partial_rollout_enable",
  "--ckpt.save_hf",
  "--ckpt.disable_ds",
  "--ckpt.load_enable",
  "--ds.use_universal_ckpt",
  "--actor.gradient_checkpointing_enable",
  "--ds.deepcompile",
  "--train.enable_ema",
  "--ds.adam_offload",
  "--ds.use_liger_kernel",
  "--ds.overlap_comm",
  "--actor.gradient_checkpointing_reentrant",
  "--data.disable_fast_tokenizer",
  "--ds.enable_sleep",
  "--ds.packing_samples",
  "--train.dynamic_batch_enable",
  "--ds.load_in_4bit",
  "--reward.normalize_enable",
  "--train.full_determinism_enable",
  "--critic.save_value_network",
  "--actor.muon.nesterov",
  "--critic.muon.nesterov",
  "--actor.muon.no_nesterov",
  "--critic.muon.no_nesterov",
  "--algo.kl.use_loss",
  "--algo.advantage.no_std_norm",
  "--ref.offload",
  "--reward.offload",
  "--data.apply_chat_template",
  "--algo.dynamic_filtering_enable",
  "--actor.freeze_visual_encoder",
  "--use_ms",
];
/** openrlhf/cli/train_rm.py at v0.11.0. */
const trainRmFlags = [
  "--ckpt.output_dir",
  "--ckpt.save_steps",
  "--ckpt.save_hf",
  "--ckpt.disable_ds",
  "--logger.logging_steps",
  "--eval.steps",
  "--ckpt.path",
  "--ckpt.max_num",
  "--ckpt.max_mem",
  "--ckpt.load_enable",
  "--ds.use_universal_ckpt",
  "--model.gradient_checkpointing_enable",
  "--ds.deepcompile",
  "--train.seed",
  "--train.full_determinism_enable",
  "--local_rank",
  "--ds.zero_stage",
  "--ds.param_dtype",
  "--ds.zpg",
  "--ds.adam_offload",
  "--ds.attn_implementation",
  "--ds.experts_implementation",
  "--ds.grad_accum_dtype",
  "--ds.overlap_comm",
  "--model.gradient_checkpointing_reentrant",
  "--data.disable_fast_tokenizer",
  "--data.dataloader_num_workers",
  "--ds.tensor_parallel_size",
  "--model.model_name_or_path",
  "--ds.value_head_prefix",
  "--ds.ring_attn_size",
  "--ds.ring_attn_head_stride",
  "--ds.load_in_4bit",
  "--ds.lora.rank",
  "--ds.lora.alpha",
  "--ds.lora.dropout",
  "--ds.lora.target_modules",
  "--train.max_epochs",
  "--model.aux_loss_coef",
  "--model.compute_fp32_loss_enable",
  "--model.margin_loss_enable",
  "--train.micro_batch_size",
  "--train.batch_size",
  "--model.loss_type",
  "--optim",
  "--muon.lr",
  "--muon.momentum",
  "--muon.ns_steps",
  "--muon.nesterov",
  "--muon.no_nesterov",
  "--adam.lr",
  "--adam.betas",
  "--adam.eps",
  "--adam.weight_decay",
  "--lr_scheduler",
  "--lr_warmup_ratio",
  "--min_lr_ratio",
  "--max_norm",
  "--ds.packing_samples",
  "--data.dataset",
  "--data.dataset_probs",
  "--eval.dataset",
  "--data.dataset_split",
  "--eval.split",
  "--data.max_samples",
  "--data.prompt_key",
  "--data.chosen_key",
  "--data.rejected_key",
  "--data.input_template",
  "--data.apply_chat_template",
  "--data.tokenizer_chat_template",
  "--data.max_len",
  "--logger.wandb.key",
  "--logger.wandb.org",
  "--logger.wandb.group",
  "--logger.wandb.project",
  "--logger.wandb.run_name",
  "--logger.tensorboard_dir",
  "--use_ms",
];

const trainRmSwitches = [
  "--ckpt.save_hf",
  "--ckpt.disable_ds",
  "--ckpt.load_enable",
  "--ds.use_universal_ckpt",
  "--model.gradient_checkpointing_enable",
  "--ds.deepcompile",
  "--train.full_determinism_enable",
  "--ds.adam_offload",
  "--ds.overlap_comm",
  "--model.gradient_checkpointing_reentrant",
  "--data.disable_fast_tokenizer",
  "--ds.load_in_4bit",
  "--model.compute_fp32_loss_enable",
  "--model.margin_loss_enable",
  "--muon.nesterov",
  "--muon.no_nesterov",
  "--ds.packing_samples",
  "--data.apply_chat_template",
  "--use_ms",
];
/** openrlhf/cli/train_dpo.py at v0.11.0. */
const trainDpoFlags = [
  "--ckpt.output_dir",
  "--ckpt.save_steps",
  "--ckpt.save_hf",
  "--ckpt.disable_ds",
  "--logger.logging_steps",
  "--eval.steps",
  "--ckpt.path",
  "--ckpt.max_num",
  "--ckpt.max_mem",
  "--ds.use_universal_ckpt",
  "--train.micro_batch_size",
  "--train.batch_size",
  "--ckpt.load_enable",
  "--model.gradient_checkpointing_enable",
  "--ds.deepcompile",
  "--train.seed",
  "--train.full_determinism_enable",
  "--data.disable_fast_tokenizer",
  "--data.dataloader_num_workers",
  "--local_rank",
  "--ds.zero_stage",
  "--ds.param_dtype",
  "--ref.offload",
  "--ds.zpg",
  "--ds.adam_offload",
  "--ds.attn_implementation",
  "--ds.experts_implementation",
  "--ds.use_liger_kernel",
  "--ds.grad_accum_dtype",
  "--ds.overlap_comm",
  "--model.gradient_checkpointing_reentrant",
  "--ds.tensor_parallel_size",
  "--train.max_epochs",
  "--model.beta",
  "--model.ipo_enable",
  "--model.label_smoothing",
  "--model.aux_loss_coef",
  "--model.nll_loss_coef",
  "--optim",
  "--muon.lr",
  "--muon.momentum",
  "--muon.ns_steps",
  "--muon.nesterov",
  "--muon.no_nesterov",
  "--adam.lr",
  "--adam.betas",
  "--adam.eps",
  "--adam.weight_decay",
  "--lr_scheduler",
  "--lr_warmup_ratio",
  "--min_lr_ratio",
  "--max_norm",
  "--ds.ring_attn_size",
  "--ds.ring_attn_head_stride",
  "--ds.load_in_4bit",
  "--ds.lora.rank",
  "--ds.lora.alpha",
  "--ds.lora.target_modules",
  "--ds.lora.dropout",
  "--ds.packing_samples",
  "--model.model_name_or_path",
  "--ref.model_name_or_path",
  "--data.dataset",
  "--data.dataset_probs",
  "--eval.dataset",
  "--data.dataset_split",
  "--eval.split",
  "--data.max_samples",
  "--data.prompt_key",
  "--data.chosen_key",
  "--data.rejected_key",
  "--data.input_template",
  "--data.apply_chat_template",
  "--data.tokenizer_chat_template",
  "--data.max_len",
  "--logger.wandb.key",
  "--logger.wandb.org",
  "--logger.wandb.group",
  "--logger.wandb.project",
  "--logger.wandb.run_name",
  "--logger.tensorboard_dir",
  "--use_ms",
];

const trainDpoSwitches = [
  "--ckpt.save_hf",
  "--ckpt.disable_ds",
  "--ds.use_universal_ckpt",
  "--ckpt.load_enable",
  "--model.gradient_checkpointing_enable",
  "--ds.deepcompile",
  "--train.full_determinism_enable",
  "--data.disable_fast_tokenizer",
  "--ref.offload",
  "--ds.adam_offload",
  "--ds.use_liger_kernel",
  "--ds.overlap_comm",
  "--model.gradient_checkpointing_reentrant",
  "--model.ipo_enable",
  "--muon.nesterov",
  "--muon.no_nesterov",
  "--ds.load_in_4bit",
  "--ds.packing_samples",
  "--data.apply_chat_template",
  "--use_ms",
];

/** openrlhf/cli/lora_combiner.py at v0.11.0. */
const loraCombinerFlags = ["--model_path", "--lora_path", "--output_path", "--is_rm", "--ds.param_dtype"];
const loraCombinerSwitches = ["--is_rm"];

/** Checks an argument list against a CLI's flags: each known, switches alone, every other flag with one value. */
function checkArguments(args: readonly string[], flags: readonly string[], switches: readonly string[]): void {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--")) throw new Error(`"${arg}" at ${i} is not a flag (a value without one?)`);
    expect(flags, `${arg} is not a flag of the pinned OpenRLHF`).toContain(arg);
    if (switches.includes(arg)) continue;
    const value = args[i + 1];
    expect(value, `${arg} needs a value`).toBeDefined();
    expect(value!.startsWith("--"), `${arg} needs a value, got ${value}`).toBe(false);
    i++;
  }
}

/** Runs a script without blocking this process (the test's server must keep answering). */
function runScript(
  script: string,
  env: NodeJS.ProcessEnv,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn("bash", [script], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => child.on("close", (status) => resolve({ status, stdout, stderr })));
}

const flagValue = (args: readonly string[], flag: string) => args[args.indexOf(flag) + 1];

describe(`OpenRLHF ${openRlhfVersion} command lines`, () => {
  const ppoInput = {
    actor: "/models/sft-merged",
    prompts: "/run/prompts.jsonl",
    output: "/run/ppo",
    checkpoints: "/run/ckpt",
  };

  it("PPO: every flag is one of train_ppo_ray.py's, with SALMON's settings and selfalign's reward endpoint", () => {
    const args = openRlhfPpoArguments(ppoInput);
    expect(args.slice(0, 2)).toEqual(["-m", "openrlhf.cli.train_ppo_ray"]);
    checkArguments(args.slice(2), trainPpoRayFlags, trainPpoRaySwitches);
    expect(flagValue(args, "--actor.model_name_or_path")).toBe("/models/sft-merged");
    expect(flagValue(args, "--reward.remote_url")).toBe("http://127.0.0.1:8000/get_reward");
    expect(flagValue(args, "--data.prompt_dataset")).toBe("/run/prompts.jsonl");
    expect(flagValue(args, "--data.input_key")).toBe("prompt");
    expect(flagValue(args, "--data.label_key")).toBe("label");
    expect(args).not.toContain("--data.apply_chat_template");
    // B.5: T 0.7, top-p 1, 256 + 1024 tokens, KL 0.01 (k1), GAE 1/1, clips 0.2/0.2, lr 2e-5, batches 576/288, 2 x 2.
    const expected = {
      "--rollout.temperature": "0.7",
      "--rollout.top_p": "1",
      "--rollout.max_new_tokens": "1024",
      "--data.max_len": "1280",
      "--algo.kl.init_coef": "0.01",
      "--algo.kl.estimator": "k1",
      "--algo.advantage.gamma": "1",
      "--algo.advantage.lambd": "1",
      "--actor.eps_clip": "0.2",
      "--critic.value_clip": "0.2",
      "--actor.adam.lr": "0.00002",
      "--rollout.batch_size": "576",
      "--train.batch_size": "288",
      "--train.max_epochs": "2",
      "--train.num_episodes": "2",
      "--ds.lora.rank": "64",
      "--ds.lora.alpha": "16",
      "--ds.zero_stage": "2",
      "--ckpt.save_steps": "10",
      "--train.seed": "42",
    };
    for (const [flag, value] of Object.entries(expected)) expect([flag, flagValue(args, flag)]).toEqual([flag, value]);
    // Colocated, the vLLM engines cover the actor's GPUs exactly (OpenRLHF asserts it).
    const two = openRlhfPpoArguments({ ...ppoInput, nodes: 2, gpusPerNode: 8, vllmTensorParallel: 2 });
    expect(flagValue(two, "--vllm.num_engines")).toBe("8");
    const full = openRlhfPpoArguments({ ...ppoInput, loraRank: 0, colocate: false, zeroStage: 3 });
    checkArguments(full.slice(2), trainPpoRayFlags, trainPpoRaySwitches);
    expect(full).not.toContain("--ds.lora.rank");
    expect(full).not.toContain("--train.colocate_all");
  });

  it("reward model and DPO: train_rm.py's and train_dpo.py's flags on selfalign's prompt/chosen/rejected exports", () => {
    const common = { model: "/models/base", dataset: "/run/reward-pairs.jsonl", output: "/run/rm" };
    const rm = openRlhfPairArguments("reward", common);
    expect(rm.slice(0, 2)).toEqual(["--module", "openrlhf.cli.train_rm"]);
    checkArguments(rm.slice(2), trainRmFlags, trainRmSwitches);
    expect([
      flagValue(rm, "--data.prompt_key"),
      flagValue(rm, "--data.chosen_key"),
      flagValue(rm, "--data.rejected_key"),
    ]).toEqual(["prompt", "chosen", "rejected"]);
    expect(rm).not.toContain("--model.beta");
    for (const variant of [{}, { ipo: true }, { labelSmoothing: 0.1 }]) {
      const dpo = openRlhfPairArguments("dpo", { ...common, ...variant });
      expect(dpo.slice(0, 2)).toEqual(["--module", "openrlhf.cli.train_dpo"]);
      checkArguments(dpo.slice(2), trainDpoFlags, trainDpoSwitches);
      expect(flagValue(dpo, "--model.beta")).toBe("0.1");
    }
    expect(openRlhfPairArguments("dpo", { ...common, ipo: true })).toContain("--model.ipo_enable");
    expect(flagValue(openRlhfPairArguments("dpo", { ...common, labelSmoothing: 0.1 }), "--model.label_smoothing")).toBe(
      "0.1",
    );
    for (const reward of [false, true]) {
      const merge = openRlhfMergeArguments("/models/base", "/run/sft/peft", "/run/actor", reward);
      expect(merge.slice(0, 2)).toEqual(["-m", "openrlhf.cli.lora_combiner"]);
      checkArguments(merge.slice(2), loraCombinerFlags, loraCombinerSwitches);
    }
  });
});

/** The shell commands of a Markdown file's ```sh blocks, continuation lines joined. */
function shellCommandsIn(path: string): string[] {
  const blocks = [...readFileSync(path, "utf8").matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
  return blocks.flatMap((block) =>
    block
      .replace(/\\\n\s*/g, " ")
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean),
  );
}

describe("examples/openrlhf/README.md", () => {
  const commands = shellCommandsIn("examples/openrlhf/README.md");

  it("shows selfalign commands with options the CLI has", () => {
    const root = new Command("selfalign");
    for (const register of cliCommands) register(root);
    const ours = commands.filter((line) => line.startsWith("selfalign "));
    expect(ours.length).toBeGreaterThanOrEqual(4);
    for (const line of ours) {
      const words = line.split(/\s+/).slice(1);
      let command = root.commands.find((one) => one.name() === words[0]);
      expect(command, line).toBeDefined();
      const sub = command!.commands.find((one) => one.name() === words[1]);
      if (sub) command = sub;
      for (const flag of line.match(/ --[a-z][a-z-]*/g) ?? [])
        expect(
          command!.options.map((option) => option.long),
          line,
        ).toContain(flag.trim());
    }
  });

  it("shows OpenRLHF commands whose flags the pinned version has", () => {
    const lists = {
      "openrlhf.cli.train_rm": trainRmFlags,
      "openrlhf.cli.train_dpo": trainDpoFlags,
    } as const;
    const theirs = commands.filter((line) => line.startsWith("deepspeed --module"));
    expect(theirs).toHaveLength(2);
    for (const line of theirs) {
      const module = line.split(/\s+/)[2] as keyof typeof lists;
      expect(Object.keys(lists)).toContain(module);
      const flags = (line.match(/ --[a-z][a-z_.]*/g) ?? []).map((flag) => flag.trim()).slice(1); // after --module
      for (const flag of flags) expect(lists[module], line).toContain(flag);
    }
  });
});

describe("the salmon-rl export for OpenRLHF", () => {
  let work: string;
  let server: StartServerResult;
  let constitution: Constitution;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "selfalign-openrlhf-"));
    constitution = await loadConstitution(defaultConstitutionDir());
    // Our own server: the script only asks its /health before PPO starts.
    server = await startServer({ modelName: "reward", port: 0 });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const prompts = [
    { id: "p1", instruction: "Name a colour.", promptType: "general" as const },
    { id: "p2", instruction: "What is 12 x 7?", input: "Show the working.", promptType: "reasoning" as const },
  ];

  it("writes the policy's chat prompts with labels the reward server reads the request and prompt type from", async () => {
    const out = join(work, "export");
    const result = await exportOpenRlhfPpo(out, constitution, prompts, "concise", {});
    expect(result.count).toBe(2);
    const rows = readFileSync(result.prompts, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(rows[1]).toEqual({
      id: "p2",
      prompt: chatPrompt(constitution.assistant, "concise", "What is 12 x 7?", "Show the working."),
      label: expect.any(String),
    });
    expect(parseRewardLabel(rows[1].label)).toEqual({
      instruction: "What is 12 x 7?",
      input: "Show the working.",
      promptType: "reasoning",
    });
    expect(parseRewardLabel(rows[0].label)).toEqual({ instruction: "Name a colour.", promptType: "general" });
  });

  it("the launch script merges the SFT adapter, checks the reward server, then runs PPO with exactly the built arguments", async () => {
    const out = join(work, "script");
    const { script } = await exportOpenRlhfPpo(out, constitution, prompts, "concise", {
      base: "/models/llama base",
      sftAdapter: join(work, "sft peft"),
      rewardModel: "/runs/x/rm",
      baseGguf: "/models/base.gguf",
      ppo: { gpusPerNode: 4 },
    });
    const bin = join(work, "bin");
    mkdirSync(bin, { recursive: true });
    const calls = join(work, "calls.jsonl");
    const realPython = spawnSync("sh", ["-c", "command -v python3"], { encoding: "utf8" }).stdout.trim();
    // A stand-in python3: the version check (a script on stdin) passes, `-c` (the health check) runs for real, and
    // each `-m` module call is recorded; the merge creates the merged model's config.json.
    writeFileSync(
      join(bin, "python3"),
      `#!/bin/sh
if [ "$1" = "-" ]; then cat >/dev/null; exit 0; fi
if [ "$1" = "-c" ]; then exec ${realPython} "$@"; fi
${realPython} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> ${shellQuote(calls)}
if [ "$2" = "openrlhf.cli.lora_combiner" ]; then mkdir -p "$8" && echo {} > "$8/config.json"; fi
`,
    );
    chmodSync(join(bin, "python3"), 0o755);
    const rewardUrl = server.url.replace(/\/v1$/, "/get_reward");
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, REWARD_URL: rewardUrl };
    const run = await runScript(script, env);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const [merge, ppo] = readFileSync(calls, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as string[]);
    expect(merge).toEqual(openRlhfMergeArguments("/models/llama base", join(work, "sft peft"), join(out, "actor")));
    expect(ppo).toEqual(
      openRlhfPpoArguments({
        gpusPerNode: 4,
        actor: join(out, "actor"),
        rewardUrl,
        prompts: join(out, "prompts.jsonl"),
        output: join(out, "ppo"),
        checkpoints: join(out, "checkpoints"),
      }),
    );
    expect(run.stdout).toContain(`selfalign model convert-peft --peft "${join(out, "ppo")}" --base /models/base.gguf`);

    // No reward server: the script stops before PPO and says how to start one.
    rmSync(calls);
    const closed = await runScript(script, { ...env, REWARD_URL: "http://127.0.0.1:9/get_reward" });
    expect(closed.status).toBe(1);
    expect(closed.stderr).toContain(
      "no reward server at http://127.0.0.1:9/get_reward; start it with: selfalign serve --reward-model /runs/x/rm",
    );
    expect(existsSync(calls)).toBe(false);
  });
});
