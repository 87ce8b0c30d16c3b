import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../errors/index.js";
import { packageRoot } from "../../package-root.js";
import { hfTrainerOptionsSchema } from "./hf-trainer-options.js";
import { buildLaunchCommand, scriptArguments } from "./launch-command.js";

const inputs = { model: "/models/tiny", data: "/run/sft.jsonl", output: "/run/peft" };
const configs = join(packageRoot(), "python", "configs");
const script = join(packageRoot(), "python", "train_lora.py");

/** The value following a flag in an argument list. */
function flag(args: string[], name: string): string | undefined {
  const at = args.indexOf(name);
  return at < 0 ? undefined : args[at + 1];
}

describe("buildLaunchCommand", () => {
  it("single GPU: accelerate with our single_gpu.yaml, one process, then the script and its arguments", () => {
    const command = buildLaunchCommand(inputs);
    expect(command.command).toBe("python3");
    expect(command.processes).toBe(1);
    expect(command.args.slice(0, 4)).toEqual([
      "-m",
      "accelerate.commands.launch",
      "--config_file",
      join(configs, "single_gpu.yaml"),
    ]);
    expect(flag(command.args, "--num_processes")).toBe("1");
    expect(flag(command.args, "--mixed_precision")).toBe("bf16");
    const at = command.args.indexOf(script);
    expect(at).toBeGreaterThan(0);
    expect(command.args.slice(at + 1)).toEqual(scriptArguments(inputs));
  });

  it("multi-GPU DDP: multi_gpu.yaml and the GPU count as processes", () => {
    const command = buildLaunchCommand(inputs, { mode: "multi-gpu", gpusPerMachine: 8, python: "/venv/bin/python" });
    expect(command.command).toBe("/venv/bin/python");
    expect(flag(command.args, "--config_file")).toBe(join(configs, "multi_gpu.yaml"));
    expect(flag(command.args, "--num_processes")).toBe("8");
    expect(flag(command.args, "--num_machines")).toBe("1");
    expect(command.args).not.toContain("--machine_rank");
  });

  it("multi-node defaults to DeepSpeed ZeRO-3 with our json, and passes rank and rendezvous address", () => {
    const command = buildLaunchCommand(inputs, {
      mode: "multi-node",
      gpusPerMachine: 4,
      machines: 2,
      machineRank: 1,
      mainProcessIp: "10.0.0.1",
    });
    expect(command.processes).toBe(8);
    expect(flag(command.args, "--config_file")).toBe(join(configs, "deepspeed_zero3.yaml"));
    expect(flag(command.args, "--deepspeed_config_file")).toBe(join(configs, "deepspeed_zero3.json"));
    expect(flag(command.args, "--num_processes")).toBe("8");
    expect(flag(command.args, "--num_machines")).toBe("2");
    expect(flag(command.args, "--machine_rank")).toBe("1");
    expect(flag(command.args, "--main_process_ip")).toBe("10.0.0.1");
    expect(flag(command.args, "--main_process_port")).toBe("29500");
  });

  it("FSDP uses fsdp.yaml", () => {
    const command = buildLaunchCommand(inputs, { mode: "multi-gpu", gpusPerMachine: 2, distributed: "fsdp" });
    expect(flag(command.args, "--config_file")).toBe(join(configs, "fsdp.yaml"));
    expect(command.args).not.toContain("--deepspeed_config_file");
  });

  it("the python launcher runs the script alone", () => {
    const command = buildLaunchCommand(inputs, { launcher: "python", script: "/tmp/s.py" });
    expect(command.args[0]).toBe("/tmp/s.py");
    expect(command.args).not.toContain("accelerate.commands.launch");
  });

  it.each([
    [{ mode: "multi-gpu" as const }, /gpusPerMachine must be a positive integer, got nothing/],
    [{ mode: "single-gpu" as const, gpusPerMachine: 2 }, /use "multi-gpu"/],
    [{ mode: "multi-node" as const, gpusPerMachine: 2, machines: 2 }, /needs mainProcessIp/],
    [{ mode: "multi-node" as const, gpusPerMachine: 2, machines: 1, mainProcessIp: "h" }, /machines >= 2/],
    [
      { mode: "multi-node" as const, gpusPerMachine: 2, machines: 2, mainProcessIp: "h", machineRank: 2 },
      /machineRank must be in 0..1/,
    ],
    [{ launcher: "python" as const, mode: "multi-gpu" as const, gpusPerMachine: 2 }, /needs launcher "accelerate"/],
  ])("rejects %o with a ConfigError", (options, message) => {
    expect(() => buildLaunchCommand(inputs, options)).toThrow(ConfigError);
    expect(() => buildLaunchCommand(inputs, options)).toThrow(message);
  });
});

describe("scriptArguments", () => {
  it("maps TrainOptions onto the script's flags, LoRA targets onto PEFT module names", () => {
    const args = scriptArguments(
      {
        ...inputs,
        training: {
          rank: 8,
          alpha: 32,
          dropout: 0,
          targets: ["q", "v", "gate", "down"],
          learningRate: 1e-4,
          maxSteps: 30,
          gradientAccumulation: 4,
          warmupSteps: 3,
          schedule: "linear",
          maxGradNorm: 0.5,
          cutoffLen: 512,
          overlong: "drop",
          seed: 7,
          activationCheckpointing: false,
        },
      },
      { batchSize: 2, dtype: "bfloat16" },
    );
    expect(flag(args, "--rank")).toBe("8");
    expect(flag(args, "--alpha")).toBe("32");
    expect(flag(args, "--dropout")).toBe("0");
    expect(flag(args, "--target-modules")).toBe("q_proj,v_proj,gate_proj,down_proj");
    expect(flag(args, "--learning-rate")).toBe("0.0001");
    expect(flag(args, "--max-steps")).toBe("30");
    expect(flag(args, "--gradient-accumulation")).toBe("4");
    expect(flag(args, "--warmup-steps")).toBe("3");
    expect(flag(args, "--schedule")).toBe("linear");
    expect(flag(args, "--max-grad-norm")).toBe("0.5");
    expect(flag(args, "--cutoff-len")).toBe("512");
    expect(flag(args, "--overlong")).toBe("drop");
    expect(flag(args, "--seed")).toBe("7");
    expect(flag(args, "--batch-size")).toBe("2");
    expect(flag(args, "--dtype")).toBe("bfloat16");
    expect(args).not.toContain("--gradient-checkpointing");
  });

  it("uses the embedded trainer's defaults when options are absent", () => {
    const args = scriptArguments(inputs);
    expect(flag(args, "--rank")).toBe("16");
    expect(flag(args, "--target-modules")).toBe("q_proj,k_proj,v_proj,o_proj");
    expect(flag(args, "--schedule")).toBe("cosine");
    expect(args).not.toContain("--max-steps");
    expect(args).toContain("--gradient-checkpointing");
  });
});

describe("hfTrainerOptionsSchema", () => {
  it("accepts a multi-node FSDP config and rejects unknown keys and bad values", () => {
    const config = hfTrainerOptionsSchema.parse({
      mode: "multi-node",
      distributed: "fsdp",
      gpusPerMachine: 8,
      machines: 2,
      machineRank: 0,
      mainProcessIp: "10.0.0.1",
    });
    expect(buildLaunchCommand(inputs, config).processes).toBe(16);
    expect(hfTrainerOptionsSchema.safeParse({ gpus: 8 }).success).toBe(false);
    expect(hfTrainerOptionsSchema.safeParse({ mode: "tpu" }).success).toBe(false);
    expect(hfTrainerOptionsSchema.safeParse({ gpusPerMachine: 0 }).success).toBe(false);
  });
});

describe("buildLaunchCommand: numProcesses and your own configs", () => {
  it("takes the total process count instead of GPUs per machine, and checks the two agree", () => {
    const launch = { mode: "multi-node" as const, machines: 4, numProcesses: 32, mainProcessIp: "h0" };
    const command = buildLaunchCommand(inputs, launch);
    expect(command.processes).toBe(32);
    expect(flag(command.args, "--num_processes")).toBe("32");
    expect(buildLaunchCommand(inputs, { ...launch, gpusPerMachine: 8 }).processes).toBe(32);
    expect(() => buildLaunchCommand(inputs, { ...launch, gpusPerMachine: 4 })).toThrow(
      /numProcesses 32 must equal machines \(4\) × gpusPerMachine \(4\)/,
    );
    expect(() => buildLaunchCommand(inputs, { ...launch, numProcesses: 30 })).toThrow(ConfigError);
  });

  it("uses an accelerate config and a DeepSpeed config of your own in place of ours", () => {
    const command = buildLaunchCommand(inputs, {
      mode: "multi-gpu",
      gpusPerMachine: 8,
      distributed: "deepspeed-zero3",
      accelerateConfig: "/site/accelerate.yaml",
      deepspeedConfig: "/site/zero3-offload.json",
    });
    expect(flag(command.args, "--config_file")).toBe("/site/accelerate.yaml");
    expect(flag(command.args, "--deepspeed_config_file")).toBe("/site/zero3-offload.json");
    const fsdp = buildLaunchCommand(inputs, {
      mode: "multi-gpu",
      gpusPerMachine: 2,
      distributed: "fsdp",
      accelerateConfig: "/site/fsdp.yaml",
    });
    expect(flag(fsdp.args, "--config_file")).toBe("/site/fsdp.yaml");
    expect(() =>
      buildLaunchCommand(inputs, { mode: "multi-gpu", gpusPerMachine: 2, deepspeedConfig: "/site/ds.json" }),
    ).toThrow(/deepspeedConfig is used with distributed "deepspeed-zero3", got distributed "ddp"/);
  });
});

describe("python/configs", () => {
  it("leave GPU choice to CUDA_VISIBLE_DEVICES and precision to accelerate's --mixed_precision", async () => {
    const { readFile } = await import("node:fs/promises");
    expect(await readFile(join(configs, "single_gpu.yaml"), "utf8")).toMatch(/^gpu_ids: all$/m);
    const deepspeed = JSON.parse(await readFile(join(configs, "deepspeed_zero3.json"), "utf8"));
    expect(deepspeed.bf16).toEqual({ enabled: "auto" });
    expect(deepspeed.fp16).toEqual({ enabled: "auto" });
  });
});
