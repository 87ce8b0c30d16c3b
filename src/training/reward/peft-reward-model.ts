/**
 * A reward model trained on GPUs (python/train_pairs.py: a PEFT LoRA on LlamaForSequenceClassification with the
 * `score` head in modules_to_save) converted back into the folder `RewardModel.load` and `selfalign serve
 * --reward-model` read: adapter.gguf (q/k rows permuted for llama.cpp's RoPE), reward-head.safetensors and
 * reward-model.json.
 */
import { readFile, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { ConfigError } from "../../errors/index.js";
import { GgufFile } from "../../gguf/index.js";
import { loadAdapter } from "../embedded/adapter-source.js";
import { readLlamaModelConfig } from "../embedded/llama-weights.js";
import { writeGgufLora } from "../export/gguf-lora.js";
import { rewardHeadFile, writeRewardHead } from "./reward-head.js";
import { type RewardModelInfo, rewardModelFile } from "./reward-model-info.js";

/** What train_pairs.py writes next to a reward adapter: how its tokenizer encoded the texts it trained on. */
export const peftRewardInfoFile = "selfalign-reward.json";

export interface PeftRewardModelResult {
  info: RewardModelInfo;
  adapterPath: string;
  headPath: string;
}

/**
 * Writes `outDir`/adapter.gguf, reward-head.safetensors and reward-model.json from the PEFT folder `peftDir` for the
 * GGUF base `basePath` (the same model transformers trained). Whether a text is scored as BOS + tokens comes from
 * selfalign-reward.json when the trainer wrote one, else from the GGUF's tokenizer.ggml.add_bos_token.
 */
export async function convertPeftRewardModel(
  peftDir: string,
  basePath: string,
  outDir: string,
): Promise<PeftRewardModelResult> {
  const config = await readLlamaModelConfig(basePath);
  const loaded = await loadAdapter(peftDir, config);
  if (!loaded.head) {
    throw new ConfigError(
      "has no reward head (base_model.model.score.weight); is it a reward model trained with --kind reward (PEFT task SEQ_CLS, score in modules_to_save)?",
      { path: join(peftDir, "adapter_model.safetensors") },
    );
  }
  const adapterPath = join(outDir, "adapter.gguf");
  const headPath = join(outDir, rewardHeadFile);
  await writeGgufLora(adapterPath, loaded.adapter, config.architecture, `${basename(basePath)}-reward-lora`);
  await writeRewardHead(headPath, loaded.head);
  const info: RewardModelInfo = {
    format: "selfalign-reward-model",
    version: 1,
    base: basename(basePath),
    basePath: resolve(basePath),
    adapter: "adapter.gguf",
    head: rewardHeadFile,
    hidden: config.dim,
    addBos: (await trainerAddedBos(peftDir)) ?? (await ggufAddsBos(basePath)),
  };
  await writeFile(join(outDir, rewardModelFile), `${JSON.stringify(info, null, 2)}\n`);
  return { info, adapterPath, headPath };
}

async function trainerAddedBos(peftDir: string): Promise<boolean | undefined> {
  const path = join(peftDir, peftRewardInfoFile);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  let value: unknown;
  try {
    value = (JSON.parse(text) as { adds_bos?: unknown }).adds_bos;
  } catch (error) {
    throw new ConfigError(`is not valid JSON (${(error as Error).message})`, { path });
  }
  if (typeof value !== "boolean") throw new ConfigError("adds_bos must be true or false", { path, field: "adds_bos" });
  return value;
}

/** llama.cpp's rule: add BOS when the GGUF says so, or (no flag) when it has a BOS token. */
async function ggufAddsBos(basePath: string): Promise<boolean> {
  const file = await GgufFile.open(basePath);
  try {
    const flag = file.value("tokenizer.ggml.add_bos_token");
    if (typeof flag === "boolean") return flag;
    return file.value("tokenizer.ggml.bos_token_id") !== undefined;
  } finally {
    await file.close();
  }
}
