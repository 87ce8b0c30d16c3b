/**
 * The embedded trainer on qwen3, gemma2, gemma3 and phi3 models written here: it trains, the exported GGUF LoRA loads
 * in node-llama-cpp and raises the completions' likelihood there, and our forward with the trained adapter equals
 * llama.cpp's with it (flash attention off, F32 KV cache). phi3's adapter is written on its fused tensors.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ControlledEvaluateInputItem, getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TinyModelOptions, writeTinyModel } from "../src/gguf/index.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { TsKernel } from "../src/training/embedded/kernels/ts-kernel.js";
import { LlamaTrainModel } from "../src/training/embedded/llama-train-model.js";
import { loadLlamaModel } from "../src/training/embedded/llama-weights.js";
import { kernelPrecision } from "../src/training/embedded/precision.js";
import { readGgufLora } from "../src/training/export/gguf-lora.js";
import { convertPeftToGgufLora } from "../src/training/export/peft-adapter.js";
import { readSafetensors } from "../src/training/export/safetensors.js";
import type { SftExample } from "../src/training/trainer.js";

const examples: SftExample[] = [
  { prompt: "Q: sky?\nA:", completion: " blue sky." },
  { prompt: "Q: grass?\nA:", completion: " green!" },
];

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-architectures-"));
  llama = await getLlama({ gpu: false, build: "never" });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Full logits of `tokens` in llama.cpp, with the adapter when given. */
async function llamaCppLogits(model: LlamaModel, tokens: number[], adapter?: string) {
  const context = await model.createContext({
    contextSize: 128,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    ...(adapter ? { lora: { adapters: [{ filePath: adapter, scale: 1 }] } } : {}),
  });
  try {
    const items = tokens.map((t): ControlledEvaluateInputItem => [t as never, { generateNext: { logits: true } }]);
    return (await context.getSequence().controlledEvaluate(items)).map((r) => r!.next!.logits!);
  } finally {
    await context.dispose();
  }
}

/** log p(completion | BOS + prompt) from llama.cpp's full logits. */
async function completionLogProb(model: LlamaModel, example: SftExample, adapter?: string): Promise<number> {
  const prompt = [model.tokens.bos!, ...model.tokenize(example.prompt)];
  const full = [model.tokens.bos!, ...model.tokenize(example.prompt + example.completion)];
  const rows = await llamaCppLogits(model, full.slice(0, -1), adapter);
  let total = 0;
  for (let i = prompt.length - 1; i < full.length - 1; i++) {
    const logits = rows[i]!;
    let max = Number.NEGATIVE_INFINITY;
    for (const value of logits.values()) max = Math.max(max, value);
    let sum = 0;
    for (const value of logits.values()) sum += Math.exp(value - max);
    total += logits.get(full[i + 1]!)! - max - Math.log(sum);
  }
  return total;
}

const architectures: Array<[string, TinyModelOptions]> = [
  ["qwen3", { architecture: "qwen3", headDim: 24 }],
  [
    "gemma2",
    { architecture: "gemma2", headDim: 24, extras: { slidingWindow: 6, attentionSoftcap: 5, finalSoftcap: 8 } },
  ],
  ["gemma3", { architecture: "gemma3", extras: { slidingWindow: 6, slidingWindowPattern: 2, finalSoftcap: 10 } }],
  ["phi3", { architecture: "phi3" }],
];

describe.each(architectures)("embedded LoRA training on %s", (name, options) => {
  it("lowers the loss, and node-llama-cpp applies the trained adapter exactly as our forward does", async () => {
    const base = join(dir, `${name}.gguf`);
    await writeTinyModel(base, {
      dim: 48,
      heads: 4,
      kvHeads: 2,
      ffn: 96,
      layers: 2,
      contextLength: 128,
      seed: 31,
      ...options,
    });
    const result = await new EmbeddedTrainer().train({
      base,
      examples,
      output: join(dir, `${name}-adapter`),
      options: {
        rank: 4,
        alpha: 8,
        dropout: 0,
        targets: ["q", "k", "v", "o", "gate", "up", "down"],
        learningRate: 1e-2,
        maxSteps: 25,
        warmupSteps: 2,
        kernel: "ts",
        checkpointEvery: 0,
      },
    });
    expect(result.finalLoss).toBeLessThan(result.lossCurve[0]!.loss / 2);

    const model = await llama.loadModel({ modelPath: base });
    try {
      for (const example of examples)
        expect(await completionLogProb(model, example, result.adapterPath)).toBeGreaterThan(
          (await completionLogProb(model, example)) + 3,
        );
      const loaded = await loadLlamaModel(base);
      const { adapter } = await readGgufLora(result.adapterPath, loaded.config);
      const ours = new LlamaTrainModel(loaded, kernelPrecision(new TsKernel()));
      const tokens = [model.tokens.bos!, ...model.tokenize(examples[1]!.prompt + examples[1]!.completion)];
      const logits = ours.logits(
        {
          tokens: Int32Array.from(tokens),
          positions: Int32Array.from(tokens, (_, i) => i),
          segments: { starts: Int32Array.from([0, tokens.length]) },
        },
        adapter,
      );
      let maxDiff = 0;
      (await llamaCppLogits(model, tokens, result.adapterPath)).forEach((row, t) => {
        for (const [token, value] of row) maxDiff = Math.max(maxDiff, Math.abs(value - logits[t * 354 + token]!));
      });
      expect(maxDiff).toBeLessThan(1e-4);
    } finally {
      await model.dispose();
    }
    if (name === "phi3") {
      // PEFT on Phi-3's modules: one LoRA on qkv_proj (rank 3r) and on gate_up_proj (2r), scaled like the others.
      const config = JSON.parse(await readFile(join(result.peftDir, "adapter_config.json"), "utf8"));
      expect(config).toMatchObject({
        r: 4,
        lora_alpha: 8,
        target_modules: ["qkv_proj", "gate_up_proj", "o_proj", "down_proj"],
        rank_pattern: { qkv_proj: 12, gate_up_proj: 8 },
        alpha_pattern: { qkv_proj: 24, gate_up_proj: 16 },
      });
      const { tensors } = await readSafetensors(join(result.peftDir, "adapter_model.safetensors"));
      expect(tensors.get("base_model.model.model.layers.1.self_attn.qkv_proj.lora_A.weight")?.shape).toEqual([12, 48]);
      expect(tensors.get("base_model.model.model.layers.1.mlp.gate_up_proj.lora_B.weight")?.shape).toEqual([192, 8]);
      // The fused GGUF adapter reads back into the per-projection LoRAs (training continues from it); a PEFT one
      // on the fused modules is refused, naming why.
      const again = await new EmbeddedTrainer().train({
        base,
        examples,
        output: join(dir, "phi3-again"),
        initAdapter: result.adapterPath,
        options: { maxSteps: 1, kernel: "ts", dropout: 0, learningRate: 1e-9, checkpointEvery: 0 },
      });
      expect(Math.abs(again.lossCurve[0]!.loss - result.finalLoss)).toBeLessThan(0.2 * result.finalLoss + 0.05);
      await expect(convertPeftToGgufLora(result.peftDir, base, join(dir, "phi3-peft.gguf"))).rejects.toThrow(
        /stores q\/k\/v and gate\/up fused \(phi3\).*not from PEFT/,
      );
    }
  });
});
