/**
 * A check, by hand, that a reward model trained with transformers + peft serves the same rewards through llama.cpp
 * after selfalign's conversion — for any machine with Python, torch, transformers and peft (no GPU needed):
 *
 *   npx tsx scripts/check-hf-reward-conversion.ts [--python /path/to/python]
 *
 * Python makes the tiny random LlamaForCausalLM of python/make_tiny_hf_model.py, puts a PEFT LoRA on
 * LlamaForSequenceClassification (num_labels 1) with random lora_B on q, k, v, o, gate, up and down and a random
 * `score` head in modules_to_save, saves it as PEFT does, and computes the reward of four token sequences. Here the
 * same HF weights are written as a GGUF (q/k rows permuted as convert_hf_to_gguf.py does), the PEFT folder goes
 * through convertPeftRewardModel (the code under test: PEFT names, the q/k permutation of lora_B, the head), and
 * RewardModel scores the same token ids. Prints both sets of rewards; exits non-zero if they differ by more than 1e-4.
 */
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildTinyModel, writeGguf } from "../src/gguf/index.js";
import { packageRoot } from "../src/package-root.js";
import { hfToGgufRows } from "../src/training/export/qk-permutation.js";
import { readSafetensors } from "../src/training/export/safetensors.js";
import { convertPeftRewardModel } from "../src/training/reward/peft-reward-model.js";
import { RewardModel } from "../src/training/reward/reward-model.js";

const at = process.argv.indexOf("--python");
const python = at >= 0 ? process.argv[at + 1]! : "python3";
const work = await mkdtemp(join(tmpdir(), "selfalign-hf-reward-check-"));

const program = `
import json, random, subprocess, sys
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification
work, script = sys.argv[1], sys.argv[2]
subprocess.run([sys.executable, script, "--output", work + "/hf"], check=True, stdout=subprocess.DEVNULL)
torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_pretrained(work + "/hf", num_labels=1, dtype=torch.float32)
config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0, init_lora_weights=False, task_type="SEQ_CLS",
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                    modules_to_save=["score"])
peft_model = get_peft_model(model, config).eval()
with torch.no_grad():
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            parameter.normal_(0, 0.2)
        if "modules_to_save" in name:
            parameter.normal_(0, 0.5)
peft_model.save_pretrained(work + "/peft")
json.dump({"adds_bos": True}, open(work + "/peft/selfalign-reward.json", "w"))
rng = random.Random(1)
vocab = model.config.vocab_size
pad = model.config.pad_token_id
ids = [[model.config.bos_token_id] + [rng.choice([t for t in range(4, vocab) if t != pad]) for _ in range(n)]
       for n in (5, 17, 40, 90)]
with torch.no_grad():
    rewards = [float(peft_model(input_ids=torch.tensor([s])).logits[0, 0]) for s in ids]
json.dump({"ids": ids, "rewards": rewards, "config": model.config.to_dict()}, open(work + "/expected.json", "w"))
`;

try {
  const made = spawnSync(python, ["-c", program, work, join(packageRoot(), "python", "make_tiny_hf_model.py")], {
    encoding: "utf8",
  });
  if (made.status !== 0) throw new Error(`${python} failed:\n${made.stderr}`);
  const expected = JSON.parse(await readFile(join(work, "expected.json"), "utf8")) as {
    ids: number[][];
    rewards: number[];
    config: Record<string, number>;
  };
  const c = expected.config;
  const heads = c.num_attention_heads!;
  const kvHeads = c.num_key_value_heads!;
  const built = buildTinyModel({
    dim: c.hidden_size!,
    heads,
    kvHeads,
    ffn: c.intermediate_size!,
    layers: c.num_hidden_layers!,
    vocabSize: c.vocab_size!,
    contextLength: c.max_position_embeddings!,
    rmsEpsilon: c.rms_norm_eps!,
  });
  const { tensors: hf } = await readSafetensors(join(work, "hf", "model.safetensors"));
  const blocks: Record<string, string> = {
    attn_norm: "input_layernorm",
    ffn_norm: "post_attention_layernorm",
    attn_q: "self_attn.q_proj",
    attn_k: "self_attn.k_proj",
    attn_v: "self_attn.v_proj",
    attn_output: "self_attn.o_proj",
    ffn_gate: "mlp.gate_proj",
    ffn_up: "mlp.up_proj",
    ffn_down: "mlp.down_proj",
  };
  for (const tensor of built.tensors) {
    const block = /^blk\.(\d+)\.(\w+)\.weight$/.exec(tensor.name);
    const source = block
      ? `model.layers.${block[1]}.${blocks[block[2]!]}.weight`
      : ({ "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight" }[tensor.name] ??
        "lm_head.weight");
    const weights = hf.get(source);
    if (!weights || weights.data.length !== tensor.data.length) throw new Error(`no HF tensor for ${tensor.name}`);
    // HF [out, in] row-major is GGUF's [in, out]; q/k rows go to llama.cpp's RoPE order.
    const rows =
      block?.[2] === "attn_q" || block?.[2] === "attn_k"
        ? hfToGgufRows(weights.data, block[2] === "attn_q" ? heads : kvHeads, c.hidden_size!)
        : Float32Array.from(weights.data);
    tensor.data = rows;
    tensor.type = "F32";
  }
  const base = join(work, "base.gguf");
  await writeGguf(base, { metadata: built.metadata, tensors: built.tensors });
  const folder = join(work, "reward-model");
  await mkdir(folder, { recursive: true });
  await convertPeftRewardModel(join(work, "peft"), base, folder);
  const model = await RewardModel.load(folder, { threads: 1 });
  const served: number[] = [];
  try {
    for (const ids of expected.ids) served.push(await model.scoreTokens(ids));
  } finally {
    await model.dispose();
  }
  const largest = Math.max(...served.map((reward, i) => Math.abs(reward - expected.rewards[i]!)));
  const figures = { transformers: expected.rewards, llamaCpp: served, largestDifference: largest };
  console.log(JSON.stringify(figures));
  await writeFile(join(work, "figures.json"), JSON.stringify(figures));
  process.exitCode = largest <= 1e-4 ? 0 : 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
