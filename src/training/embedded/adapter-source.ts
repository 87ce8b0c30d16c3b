/**
 * Adapters training starts from (`initAdapter`) or compares against (a preference reference): a GGUF LoRA file, a
 * PEFT folder, or a trainer output folder, read into training order and checked against the base model. A reward
 * model's head comes along (the trainer's reward-head.safetensors, or PEFT's `score.weight`) when there is one.
 */
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../errors/index.js";
import { readGgufLora } from "../export/gguf-lora.js";
import { peftScoreTensorName, readPeftAdapter } from "../export/peft-adapter.js";
import { readSafetensors } from "../export/safetensors.js";
import { checkedHead, readRewardHead, rewardHeadFile } from "../reward/reward-head.js";
import { asFloat32, type LoraAdapter, loraArrays, loraShape } from "./lora.js";
import type { LlamaConfig } from "./model-config.js";

export interface LoadedAdapter {
  adapter: LoraAdapter;
  /** The file or folder it was read from. */
  source: string;
  /** SHA-256 (16 hex digits) of rank, alpha, targets and weights: the same adapter in any format hashes alike. */
  hash: string;
  /** A reward model's head (score.weight), when the source holds one. */
  head?: Float32Array;
}

const isFile = (path: string) =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
const isDirectory = (path: string) =>
  stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );

export async function loadAdapter(path: string, config: LlamaConfig): Promise<LoadedAdapter> {
  let adapter: LoraAdapter;
  let head: Float32Array | undefined;
  let source = path;
  if (await isFile(path)) {
    adapter = await readGguf(path, config);
  } else if (await isFile(join(path, "adapter_config.json"))) {
    adapter = await readPeftAdapter(path, config);
    const { tensors } = await readSafetensors(join(path, "adapter_model.safetensors"));
    const score = tensors.get(peftScoreTensorName);
    if (score) head = checkedHead(score, config.dim, join(path, "adapter_model.safetensors"), peftScoreTensorName);
  } else if (await isFile(join(path, "adapter.gguf"))) {
    source = join(path, "adapter.gguf");
    adapter = await readGguf(source, config);
    if (await isFile(join(path, rewardHeadFile))) head = await readRewardHead(join(path, rewardHeadFile), config.dim);
  } else if (await isDirectory(path)) {
    throw new ConfigError(
      "holds neither a GGUF LoRA (adapter.gguf) nor a PEFT adapter (adapter_config.json); point at the adapter file or the folder a training wrote",
      { path },
    );
  } else {
    throw new ConfigError(
      "the adapter does not exist; give a GGUF LoRA file, a PEFT folder or a training's output folder",
      {
        path,
      },
    );
  }
  checkShapes(adapter, config, source);
  // Training updates the arrays in place: own F32 copies, never the reader's buffers.
  adapter = {
    ...adapter,
    modules: adapter.modules.map((m) => ({ ...m, a: Float32Array.from(m.a), b: Float32Array.from(m.b) })),
  };
  return { adapter, source, hash: adapterHash(adapter, head), ...(head ? { head: Float32Array.from(head) } : {}) };
}

async function readGguf(path: string, config: LlamaConfig): Promise<LoraAdapter> {
  const { adapter, architecture } = await readGgufLora(path);
  if (architecture !== config.architecture) {
    throw new ConfigError(
      `the adapter was made for a ${architecture} model, but the base model is ${config.architecture}`,
      { path },
    );
  }
  return adapter;
}

function checkShapes(adapter: LoraAdapter, config: LlamaConfig, path: string): void {
  for (const m of adapter.modules) {
    const expected = loraShape(config, m.target);
    if (m.layer >= config.layers || m.nIn !== expected.nIn || m.nOut !== expected.nOut) {
      throw new ConfigError(
        `layer ${m.layer} ${m.target}: the adapter is ${m.nIn} -> ${m.nOut} but the base model ${m.layer >= config.layers ? `has ${config.layers} layers` : `projects ${expected.nIn} -> ${expected.nOut}`}; is it the right base model?`,
        { path },
      );
    }
    if (m.a.length !== adapter.rank * m.nIn || m.b.length !== m.nOut * adapter.rank) {
      throw new ConfigError(`layer ${m.layer} ${m.target}: lora_a/lora_b do not have rank ${adapter.rank}`, { path });
    }
  }
  if (adapter.modules.length !== config.layers * adapter.targets.length) {
    throw new ConfigError(
      `the adapter has ${adapter.modules.length} LoRA modules, expected ${adapter.targets.length} per layer for ${config.layers} layers; training needs every layer adapted alike`,
      { path },
    );
  }
}

export function adapterHash(adapter: LoraAdapter, head?: Float32Array): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ rank: adapter.rank, alpha: adapter.alpha, targets: adapter.targets }));
  for (const array of loraArrays(adapter)) hash.update(asFloat32(array));
  if (head) hash.update(head);
  return hash.digest("hex").slice(0, 16);
}

/** A deep copy (the frozen reference taken before the policy's arrays are trained in place). */
export function copyAdapter(adapter: LoraAdapter): LoraAdapter {
  return {
    ...adapter,
    targets: [...adapter.targets],
    modules: adapter.modules.map((m) => ({ ...m, a: Float32Array.from(m.a), b: Float32Array.from(m.b) })),
  };
}
