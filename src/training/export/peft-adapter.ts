/**
 * PEFT adapters (adapter_model.safetensors + adapter_config.json), as transformers + peft save and load them.
 * LLaMA GGUFs store q/k rows permuted for RoPE; lora_B of q and k is converted between the two orders here.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../errors/index.js";
import {
  asFloat32,
  type LoraAdapter,
  type LoraModule,
  type LoraTarget,
  loraHfNames,
  loraShape,
  loraTargets,
  peftTargetModule,
} from "../embedded/lora.js";
import { readLlamaModelConfig } from "../embedded/llama-weights.js";
import type { LlamaConfig } from "../embedded/model-config.js";
import { writeGgufLora } from "./gguf-lora.js";
import { ggufToHfRows, hfToGgufRows } from "./qk-permutation.js";
import { readSafetensors, type SafetensorsDtype, writeSafetensors } from "./safetensors.js";

export interface PeftExportOptions {
  /** adapter_config.json base_model_name_or_path. */
  baseModelName: string;
  dropout: number;
  /** Storage type of the LoRA tensors. Default "F32" (what train_lora.py saves; F16/BF16 as other tools do). */
  dtype?: SafetensorsDtype;
  /**
   * A reward model's head ([hidden] weights): the adapter is then a sequence-classification one, as PEFT saves a
   * LoRA on LlamaForSequenceClassification (num_labels 1): task_type SEQ_CLS, the head in `modules_to_save`, stored
   * as `base_model.model.score.weight` [1, hidden].
   */
  score?: Float32Array;
}

/** Where PEFT stores a sequence-classification head saved through `modules_to_save`. */
export const peftScoreTensorName = "base_model.model.score.weight";

/** Whether convert_hf_to_gguf.py permuted q/k for this architecture (llama-style adjacent-pair RoPE). */
export function hasPermutedQk(config: Pick<LlamaConfig, "architecture" | "ropeMode">): boolean {
  return config.ropeMode === "normal";
}

function heads(config: LlamaConfig, target: LoraTarget): number | undefined {
  if (target === "q") return config.heads;
  if (target === "k") return config.kvHeads;
  return undefined;
}

export function peftTensorName(module: Pick<LoraModule, "layer" | "target">, which: "A" | "B"): string {
  return `base_model.model.model.layers.${module.layer}.${loraHfNames[module.target]}.lora_${which}.weight`;
}

export async function writePeftAdapter(
  dir: string,
  adapter: LoraAdapter,
  config: LlamaConfig,
  options: PeftExportOptions,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = adapter.modules.flatMap((m) => {
    const h = heads(config, m.target);
    const b = h !== undefined && hasPermutedQk(config) ? ggufToHfRows(asFloat32(m.b), h, adapter.rank) : asFloat32(m.b);
    const dtype = options.dtype ?? "F32";
    return [
      { name: peftTensorName(m, "A"), shape: [adapter.rank, m.nIn], data: asFloat32(m.a), dtype },
      { name: peftTensorName(m, "B"), shape: [m.nOut, adapter.rank], data: b, dtype },
    ];
  });
  if (options.score)
    tensors.push({ name: peftScoreTensorName, shape: [1, options.score.length], data: options.score, dtype: "F32" });
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
  const adapterConfig = {
    peft_type: "LORA",
    task_type: options.score ? "SEQ_CLS" : "CAUSAL_LM",
    base_model_name_or_path: options.baseModelName,
    r: adapter.rank,
    lora_alpha: adapter.alpha,
    lora_dropout: options.dropout,
    target_modules: adapter.targets.map(peftTargetModule),
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: options.score ? ["score"] : null,
    use_rslora: false,
    use_dora: false,
  };
  await writeFile(join(dir, "adapter_config.json"), `${JSON.stringify(adapterConfig, null, 2)}\n`);
}

/** Read a PEFT LoRA (F32, F16 or BF16 tensors) into GGUF order (q/k lora_B permuted for llama-style RoPE). */
export async function readPeftAdapter(dir: string, config: LlamaConfig): Promise<LoraAdapter> {
  const configPath = join(dir, "adapter_config.json");
  let raw: { r?: number; lora_alpha?: number; peft_type?: string; use_rslora?: boolean };
  try {
    raw = JSON.parse(await readFile(configPath, "utf8"));
  } catch (error) {
    throw new ConfigError(`cannot read adapter_config.json: ${(error as Error).message}`, {
      path: configPath,
      cause: error,
    });
  }
  if (raw.peft_type !== "LORA")
    throw new ConfigError(`peft_type must be LORA, got ${raw.peft_type}`, { path: configPath });
  if (raw.use_rslora) throw new ConfigError("rsLoRA adapters are not supported", { path: configPath });
  const { tensors } = await readSafetensors(join(dir, "adapter_model.safetensors"));
  const modules: LoraModule[] = [];
  const rank = Number(raw.r);
  for (let layer = 0; layer < config.layers; layer++) {
    for (const target of loraTargets) {
      const a = tensors.get(peftTensorName({ layer, target }, "A"));
      const b = tensors.get(peftTensorName({ layer, target }, "B"));
      if (!a || !b) continue;
      const h = heads(config, target);
      const bData = h !== undefined && hasPermutedQk(config) ? hfToGgufRows(b.data, h, rank) : b.data;
      modules.push({ layer, target, nIn: a.shape[1]!, nOut: b.shape[0]!, a: a.data, b: bData });
    }
  }
  if (modules.length === 0) throw new ConfigError("no LoRA tensors for this model's layers", { path: dir });
  const targets = loraTargets.filter((t) => modules.some((m) => m.target === t));
  for (const layerModules of Array.from({ length: config.layers }, (_, l) => modules.filter((m) => m.layer === l))) {
    if (layerModules.length !== targets.length) {
      throw new ConfigError("every layer must adapt the same projections", { path: dir });
    }
  }
  return { rank, alpha: Number(raw.lora_alpha ?? rank), targets, modules };
}

/** Convert a PEFT LoRA directory into a GGUF LoRA for `basePath` (llama.cpp / node-llama-cpp load the result). */
export async function convertPeftToGgufLora(peftDir: string, basePath: string, outPath: string): Promise<LoraAdapter> {
  const config = await readLlamaModelConfig(basePath);
  const adapter = await readPeftAdapter(peftDir, config);
  for (const m of adapter.modules) {
    const expected = loraShape(config, m.target);
    if (m.nIn !== expected.nIn || m.nOut !== expected.nOut) {
      throw new ConfigError(
        `layer ${m.layer} ${m.target}: the adapter is ${m.nIn} -> ${m.nOut} but the base model's projection is ${expected.nIn} -> ${expected.nOut}; is it the right base model?`,
        { path: peftDir },
      );
    }
  }
  await writeGgufLora(outPath, adapter, config.architecture);
  return adapter;
}
