/**
 * `trainer: hf` from a pipeline config, without a GPU: the config (an HF base, multi-node options) validates, the
 * stage's trainer launches exactly the accelerate command the options say, and the PEFT adapter the training
 * script saves (BF16, as DeepSpeed runs used to save it) comes back as a GGUF LoRA that node-llama-cpp applies.
 * The "python" here is a stand-in that records its command line and runs a stand-in training script speaking
 * train_lora.py's JSON-lines protocol; the real script is checked on a GPU (python/check_cpu.py checks it on CPU).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { registerTrain } from "../src/cli/commands/train.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { packageRoot } from "../src/package-root.js";
import { parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { trainerFor } from "../src/pipeline/stage-context.js";
import type { TrainConfig } from "../src/pipeline/train-config.js";
import { readGgufLora } from "../src/training/export/gguf-lora.js";
import { readPeftAdapter } from "../src/training/export/peft-adapter.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { HfGgufTrainer } from "../src/training/hf/index.js";

const work = mkdtempSync(join(tmpdir(), "selfalign-hf-pipeline-"));
const basePath = join(work, "base.gguf");
const record = join(work, "argv.json");
const fakePython = join(work, "python");
const fakeScript = join(work, "fake_train_lora.py");

// The stand-in interpreter: records argv, then runs the training script (the argument after the launcher's
// flags) with real python3, telling it this machine's rank.
writeFileSync(
  fakePython,
  `#!/usr/bin/env python3
import json, os, subprocess, sys
args = sys.argv[1:]
if args[:1] == ["-c"]:
    print("")  # the trainer's package check: report nothing missing
    sys.exit(0)
json.dump({"args": args, "nccl": os.environ.get("NCCL_SOCKET_IFNAME")}, open(${JSON.stringify(record)}, "w"))
script = next(i for i, a in enumerate(args) if a.endswith(".py"))
rank = args[args.index("--machine_rank") + 1] if "--machine_rank" in args else "0"
sys.exit(subprocess.call([sys.executable, ${JSON.stringify(fakeScript)}] + args[script + 1:], env={**os.environ, "RANK_OF_MACHINE": rank}))
`,
);
chmodSync(fakePython, 0o755);

// The stand-in training script: saves a PEFT LoRA in BF16 (q/k rows in Hugging Face order) for a 1-layer,
// dim-32 model with 4 heads and 2 KV heads, as transformers + peft name and shape it; only rank 0 reports and saves.
writeFileSync(
  fakeScript,
  `import argparse, json, os, struct, sys
p = argparse.ArgumentParser()
for name in ["--model", "--data", "--output", "--target-modules", "--schedule", "--overlong", "--dtype"]:
    p.add_argument(name)
for name in ["--rank", "--max-steps", "--batch-size", "--gradient-accumulation", "--warmup-steps", "--cutoff-len", "--seed"]:
    p.add_argument(name, type=int, default=0)
for name in ["--alpha", "--dropout", "--learning-rate", "--epochs", "--weight-decay", "--max-grad-norm"]:
    p.add_argument(name, type=float)
p.add_argument("--gradient-checkpointing", action="store_true")
a = p.parse_args()
if os.environ.get("RANK_OF_MACHINE", "0") != "0":
    sys.exit(0)
print(json.dumps({"event": "train-start", "total_steps": 2, "examples": 2, "processes": 16}))
for step in (1, 2):
    print(json.dumps({"event": "train-step", "step": step, "total_steps": 2, "loss": 2.0 / step, "lr": 1e-4}))
shapes = {"q_proj": 32, "k_proj": 16, "v_proj": 16, "o_proj": 32}
def bf16(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
header, blobs, offset = {}, [], 0
for module in a.target_modules.split(","):
    for which, shape in (("A", [a.rank, 32]), ("B", [shapes[module], a.rank])):
        name = f"base_model.model.model.layers.0.self_attn.{module}.lora_{which}.weight"
        values = [((i * 7 + len(module) * 3 + (which == "B")) % 13 - 6) / 40 for i in range(shape[0] * shape[1])]
        blob = b"".join(struct.pack("<H", bf16(v)) for v in values)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
text = json.dumps(header)
text += " " * ((8 - (8 + len(text)) % 8) % 8)
os.makedirs(a.output, exist_ok=True)
with open(os.path.join(a.output, "adapter_model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs))
json.dump({"peft_type": "LORA", "r": a.rank, "lora_alpha": a.alpha, "target_modules": a.target_modules.split(",")},
          open(os.path.join(a.output, "adapter_config.json"), "w"))
print(json.dumps({"event": "train-end", "steps": 2, "final_loss": 1.0, "output": a.output}))
`,
);

beforeAll(async () => {
  await writeTinyModel(basePath, { dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 1, contextLength: 128, seed: 4 });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const flag = (args: string[], name: string) => args[args.indexOf(name) + 1];

function pipelineConfig(machineRank: number) {
  return parsePipelineConfig({
    name: "cluster",
    model: "openai:http://10.0.0.1:8000/v1#llama-65b",
    trainBase: basePath,
    hfBase: "huggyllama/llama-65b",
    stages: {
      engrave: {
        train: {
          trainer: "hf",
          rank: 4,
          alpha: 8,
          maxSteps: 2,
          hf: {
            mode: "multi-node",
            machines: 2,
            gpusPerMachine: 8,
            machineRank,
            mainProcessIp: "10.0.0.1",
            mainProcessPort: 29600,
            distributed: "deepspeed-zero3",
            python: fakePython,
            batchSize: 2,
            preflight: false,
            env: { NCCL_SOCKET_IFNAME: "eth0" },
          },
        },
      },
      "verbose-clone": { skip: true },
    },
  });
}

describe("trainer: hf in a pipeline", () => {
  it("validates an HF base with multi-node options, and refuses hf training without an HF base", () => {
    const config = pipelineConfig(0);
    expect(config.hfBase).toBe("huggyllama/llama-65b");
    expect((config.stages.engrave!.train as TrainConfig).hf).toMatchObject({
      machines: 2,
      machineRank: 0,
      mainProcessIp: "10.0.0.1",
    });
    const { hfBase: _, ...withoutBase } = { ...config };
    expect(() => parsePipelineConfig(withoutBase)).toThrow(/hfBase: stages\.engrave\.train\.trainer is hf: set hfBase/);
    expect(() => parsePipelineConfig({ ...withoutBase, hfBase: "base.gguf" })).toThrow(/not a GGUF/);
    expect(() =>
      parsePipelineConfig({ name: "x", model: basePath, stages: { engrave: { train: { hf: { machines: 2 } } } } }),
    ).toThrow(/hf options are given but the trainer is embedded/);
  });

  it("launches accelerate as the options say, and converts the BF16 PEFT adapter to a GGUF LoRA llama.cpp applies", async () => {
    const config = pipelineConfig(0);
    const { trainer, options } = await trainerFor(config.stages.engrave!.train as TrainConfig, config.hfBase);
    expect(trainer).toBeInstanceOf(HfGgufTrainer);
    const output = join(work, "engrave");
    const result = await trainer.train({
      base: basePath,
      examples: [{ prompt: "Q: hi\nA:", completion: " hello" }],
      output,
      options,
    });
    const { args, nccl } = JSON.parse(readFileSync(record, "utf8")) as { args: string[]; nccl: string };
    expect(nccl).toBe("eth0");
    const configs = join(packageRoot(), "python", "configs");
    expect(args.slice(0, 6)).toEqual([
      "-m",
      "accelerate.commands.launch",
      "--config_file",
      join(configs, "deepspeed_zero3.yaml"),
      "--deepspeed_config_file",
      join(configs, "deepspeed_zero3.json"),
    ]);
    expect(flag(args, "--num_processes")).toBe("16");
    expect(flag(args, "--num_machines")).toBe("2");
    expect(flag(args, "--machine_rank")).toBe("0");
    expect(flag(args, "--main_process_ip")).toBe("10.0.0.1");
    expect(flag(args, "--main_process_port")).toBe("29600");
    expect(flag(args, "--model")).toBe("huggyllama/llama-65b");
    expect(flag(args, "--batch-size")).toBe("2");
    expect(flag(args, "--rank")).toBe("4");
    expect(flag(args, "--max-steps")).toBe("2");
    expect(args[args.indexOf("--model") - 1]).toBe(join(packageRoot(), "python", "train_lora.py"));

    expect(result.adapterPath).toBe(join(output, "adapter.gguf"));
    expect(result.steps).toBe(2);
    const modelConfig = (await loadLlamaModel(basePath)).config;
    const peft = await readPeftAdapter(result.peftDir, modelConfig);
    const gguf = (await readGgufLora(result.adapterPath)).adapter;
    expect(gguf).toMatchObject({ rank: 4, alpha: 8, targets: ["q", "k", "v", "o"] });
    gguf.modules.forEach((module, i) => {
      expect(Array.from(module.b)).toEqual(Array.from(peft.modules[i]!.b));
    });
    // llama.cpp loads the converted adapter, and it changes the model's log-probabilities.
    const plain = await createLlamaCppBackend({ model: basePath, contextSize: 128, threads: 1 });
    const adapted = await createLlamaCppBackend({
      model: basePath,
      contextSize: 128,
      threads: 1,
      lora: [{ path: result.adapterPath }],
    });
    try {
      const [a] = await plain.score("Q: hi\nA:", [" hello"]);
      const [b] = await adapted.score("Q: hi\nA:", [" hello"]);
      expect(Math.abs(a!.logprob - b!.logprob)).toBeGreaterThan(1e-3);
    } finally {
      await plain.close();
      await adapted.close();
    }
  });

  it("on a machine other than rank 0: trains as a worker, converts nothing, says so", async () => {
    const config = pipelineConfig(1);
    const { trainer, options } = await trainerFor(config.stages.engrave!.train as TrainConfig, config.hfBase);
    const output = join(work, "engrave-rank1");
    const result = await trainer.train({
      base: basePath,
      examples: [{ prompt: "a", completion: "b" }],
      output,
      options,
    });
    expect(flag((JSON.parse(readFileSync(record, "utf8")) as { args: string[] }).args, "--machine_rank")).toBe("1");
    expect(result).toMatchObject({ worker: true, steps: 0, adapterPath: join(output, "adapter.gguf") });
  });
});

describe("selfalign train --trainer hf", () => {
  async function train(...args: string[]): Promise<string> {
    const data = join(work, "cli-sft.jsonl");
    writeFileSync(data, `${JSON.stringify({ prompt: "Q", completion: " A" })}\n`);
    const program = new Command().exitOverride();
    registerTrain(program);
    const lines: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      await program.parseAsync(["train", "--data", data, "--trainer", "hf", "--python", fakePython, ...args], {
        from: "user",
      });
    } finally {
      write.mockRestore();
    }
    return lines.join("");
  }
  const multiNode = (rank: number) => [
    "--hf-mode",
    "multi-node",
    "--hf-gpus",
    "4",
    "--machines",
    "2",
    "--machine-rank",
    String(rank),
    "--main-process-ip",
    "10.0.0.2",
    "--batch-size",
    "3",
    "--env",
    "NCCL_SOCKET_IFNAME=ib0",
  ];

  it("passes machines, rank, address, batch size, Python and env to the launch, and converts with --gguf", async () => {
    const out = join(work, "cli-main");
    const printed = await train(
      "--base",
      "org/model",
      "--out",
      out,
      "--gguf",
      basePath,
      "--rank",
      "4",
      ...multiNode(0),
    );
    const { args, nccl } = JSON.parse(readFileSync(record, "utf8")) as { args: string[]; nccl: string };
    expect(nccl).toBe("ib0");
    expect([flag(args, "--num_processes"), flag(args, "--num_machines"), flag(args, "--machine_rank")]).toEqual([
      "8",
      "2",
      "0",
    ]);
    expect(flag(args, "--main_process_ip")).toBe("10.0.0.2");
    expect(flag(args, "--batch-size")).toBe("3");
    expect(flag(args, "--model")).toBe("org/model");
    expect(printed).toMatch(new RegExp(`wrote ${join(out, "adapter.gguf")} and ${join(out, "peft")}/ after 2 steps`));
  });

  it("says a non-main machine trained as a worker, instead of '0 steps, loss NaN'", async () => {
    const printed = await train("--base", "org/model", "--out", join(work, "cli-worker"), ...multiNode(1));
    expect(printed).toMatch(/this machine \(rank 1\) trained as a worker; the main machine \(rank 0\)/);
    expect(printed).not.toMatch(/NaN/);
  });

  it("refuses GPU-trainer flags without --trainer hf, naming them", async () => {
    const program = new Command().exitOverride();
    registerTrain(program);
    const data = join(work, "cli-sft.jsonl");
    await expect(
      program.parseAsync(
        ["train", "--base", basePath, "--data", data, "--out", join(work, "x"), "--machines", "2", "--gguf", basePath],
        { from: "user" },
      ),
    ).rejects.toThrow(/--machines, --gguf configure the GPU trainer; add --trainer hf/);
  });
});
