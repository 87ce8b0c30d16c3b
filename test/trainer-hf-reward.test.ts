/**
 * A reward model trained on the GPU path comes back servable: `trainer: hf` with kind reward runs
 * python/train_pairs.py (here a stand-in that writes what transformers + peft save for a LoRA on
 * LlamaForSequenceClassification: q/k rows in Hugging Face order, `base_model.model.score.weight` kept through
 * modules_to_save, task SEQ_CLS, plus selfalign-reward.json), and the folder is converted to adapter.gguf +
 * reward-head.safetensors + reward-model.json, whose rewards through llama.cpp (`RewardModel`) equal the embedded
 * trainer's forward with the PEFT adapter read directly, within 1e-4.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../src/gguf/index.js";
import { loadAdapter } from "../src/training/embedded/adapter-source.js";
import { TsKernel } from "../src/training/embedded/kernels/ts-kernel.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { packWhole, rewardLoss } from "../src/training/embedded/objectives/reward-objective.js";
import { kernelPrecision } from "../src/training/embedded/precision.js";
import { HfGgufTrainer } from "../src/training/hf/index.js";
import { convertPeftRewardModel } from "../src/training/reward/peft-reward-model.js";
import { RewardModel } from "../src/training/reward/reward-model.js";

const work = mkdtempSync(join(tmpdir(), "selfalign-hf-reward-"));
const basePath = join(work, "base.gguf");
const script = join(work, "fake_train_pairs.py");

// dim 32, 4 heads, 2 KV heads, 1 layer: q_proj 32 -> 32, k_proj and v_proj 32 -> 16, o_proj 32 -> 32.
writeFileSync(
  script,
  `import json, os, random, struct, sys
args = sys.argv[1:]
value = lambda name: args[args.index(name) + 1]
out, rank = value("--output"), int(value("--rank"))
assert value("--kind") == "reward"
rng = random.Random(7)
shapes = {"q_proj": 32, "k_proj": 16, "v_proj": 16, "o_proj": 32}
tensors = {}
for module in value("--target-modules").split(","):
    for which, shape in (("A", [rank, 32]), ("B", [shapes[module], rank])):
        tensors[f"base_model.model.model.layers.0.self_attn.{module}.lora_{which}.weight"] = (shape, [rng.uniform(-0.3, 0.3) for _ in range(shape[0] * shape[1])])
tensors["base_model.model.score.weight"] = ([1, 32], [rng.uniform(-1, 1) for _ in range(32)])
header, blobs, offset = {}, [], 0
for name, (shape, values) in tensors.items():
    blob = struct.pack(f"<{len(values)}f", *values)
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
text = json.dumps(header)
text += " " * ((8 - (8 + len(text)) % 8) % 8)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "adapter_model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs))
json.dump({"peft_type": "LORA", "task_type": "SEQ_CLS", "r": rank, "lora_alpha": float(value("--alpha")),
           "target_modules": value("--target-modules").split(","), "modules_to_save": ["score", "classifier", "score"]},
          open(os.path.join(out, "adapter_config.json"), "w"))
json.dump({"hidden_size": 32, "adds_bos": True, "pad_token_id": 0}, open(os.path.join(out, "selfalign-reward.json"), "w"))
print(json.dumps({"event": "train-start", "total_steps": 1, "examples": 2, "processes": 1}))
print(json.dumps({"event": "train-step", "step": 1, "total_steps": 1, "loss": 0.6, "lr": 1e-4, "accuracy": 0.5, "margin": 0.1}))
print(json.dumps({"event": "train-end", "steps": 1, "final_loss": 0.6, "output": out}))
`,
);

beforeAll(async () => {
  await writeTinyModel(basePath, { dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 1, contextLength: 128, seed: 9 });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const pairs = [
  { prompt: "Q: pick one\nA:", chosen: " yes, this one", rejected: " no" },
  { prompt: "Q: and now\nA:", chosen: " yes again", rejected: " nothing at all" },
];

describe("trainer hf, kind reward: PEFT sequence-classification adapter -> GGUF LoRA + head", () => {
  it("writes a reward-model folder whose llama.cpp rewards equal the trainer's forward of the PEFT adapter", async () => {
    const output = join(work, "rm");
    const trainer = new HfGgufTrainer({ hfBase: "/models/hf-llama", launcher: "python", script, preflight: false });
    const result = await trainer.train({
      kind: "reward",
      base: basePath,
      examples: pairs,
      output,
      options: { rank: 4, alpha: 8 },
    });
    expect(result.kind).toBe("reward");
    expect(result.adapterPath).toBe(join(output, "adapter.gguf"));
    expect(result.rewardHeadPath).toBe(join(output, "reward-head.safetensors"));
    const info = JSON.parse(readFileSync(join(output, "reward-model.json"), "utf8"));
    expect(info).toMatchObject({ adapter: "adapter.gguf", head: "reward-head.safetensors", hidden: 32, addBos: true });

    const texts = pairs.flatMap((p) => [p.prompt + p.chosen, p.prompt + p.rejected]);
    const reward = await RewardModel.load(output, { threads: 1 });
    let served: number[];
    let tokens: number[][];
    try {
      served = await reward.score(texts);
      tokens = texts.map((text) => reward.tokenize(text));
    } finally {
      await reward.dispose();
    }
    const model = new LlamaTrainModel(await loadLlamaModel(basePath), kernelPrecision(new TsKernel()));
    const peft = await loadAdapter(result.peftDir, model.config);
    const batch = packWhole(tokens.map((t) => ({ tokens: Int32Array.from(t) })));
    let ours: Float64Array | undefined;
    model.forwardBackward(
      batch,
      peft.adapter,
      undefined,
      rewardLoss(batch.lastRows, peft.head!, undefined, (rewards) => {
        ours = rewards;
        return { loss: 0, dRewards: new Float64Array(rewards.length) };
      }),
    );
    const differences = served.map((r, i) => Math.abs(r - ours![i]!));
    expect(Math.max(...differences)).toBeLessThanOrEqual(1e-4);
    // The rewards differ from text to text: the head and adapter are in use, not zeros.
    expect(Math.max(...served) - Math.min(...served)).toBeGreaterThan(1e-2);
  });

  it("selfalign model convert-peft: a reward PEFT folder becomes a reward-model folder, a causal one a GGUF LoRA", async () => {
    const peft = join(work, "rm", "peft");
    const cli = (args: string[]) =>
      spawnSync(process.execPath, ["--import", "tsx", "src/cli/cli.ts", "model", "convert-peft", ...args], {
        encoding: "utf8",
      });
    const folder = join(work, "converted-rm");
    const reward = cli(["--peft", peft, "--base", basePath, "--out", folder]);
    expect(reward.stderr).toBe("");
    expect(reward.stdout).toContain(`serve it with selfalign serve --reward-model ${folder}`);
    expect(readFileSync(join(folder, "reward-head.safetensors"))).toEqual(
      readFileSync(join(work, "rm", "reward-head.safetensors")),
    );
    const causal = join(work, "causal-peft");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(causal, { recursive: true });
    const config = JSON.parse(readFileSync(join(peft, "adapter_config.json"), "utf8"));
    writeFileSync(join(causal, "adapter_config.json"), JSON.stringify({ ...config, task_type: "CAUSAL_LM" }));
    const { readSafetensors, writeSafetensors } = await import("../src/training/export/safetensors.js");
    const tensors = [...(await readSafetensors(join(peft, "adapter_model.safetensors"))).tensors]
      .filter(([name]) => !name.includes("score"))
      .map(([name, tensor]) => ({ name, shape: tensor.shape, data: tensor.data }));
    await writeSafetensors(join(causal, "adapter_model.safetensors"), tensors);
    const lora = cli(["--peft", causal, "--base", basePath, "--out", join(work, "ppo.gguf")]);
    expect(lora.stdout).toContain("rank 4, 4 modules");
    const { readGgufLora } = await import("../src/training/export/gguf-lora.js");
    expect((await readGgufLora(join(work, "ppo.gguf"))).adapter.modules).toHaveLength(4);
  });

  it("refuses a PEFT folder without a reward head, naming what is missing", async () => {
    const causal = join(work, "causal");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(causal, { recursive: true });
    writeFileSync(join(causal, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 1, lora_alpha: 1 }));
    const { writeSafetensors } = await import("../src/training/export/safetensors.js");
    await writeSafetensors(join(causal, "adapter_model.safetensors"), [
      {
        name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        shape: [1, 32],
        data: new Float32Array(32),
      },
      {
        name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        shape: [32, 1],
        data: new Float32Array(32),
      },
    ]);
    await expect(convertPeftRewardModel(causal, basePath, join(work, "no-head"))).rejects.toThrow(
      /has no reward head \(base_model\.model\.score\.weight\)/,
    );
  });
});
