/**
 * The reward model's scalar head: r = score.weight · h, h the final normed hidden state of the last token, no bias
 * (SALMON's head has its bias fixed at 0; Hugging Face's LlamaForSequenceClassification has none). Stored as
 * safetensors with one tensor `score.weight` of shape [1, hidden], the layout that class uses.
 */
import { ConfigError } from "../../errors/index.js";
import { readSafetensors, writeSafetensors } from "../export/safetensors.js";
import { asFloat32 } from "../embedded/lora.js";
import type { Vec } from "../embedded/ops.js";

export const rewardHeadFile = "reward-head.safetensors";
export const scoreTensorName = "score.weight";

export async function writeRewardHead(path: string, head: Vec): Promise<void> {
  await writeSafetensors(path, [{ name: scoreTensorName, shape: [1, head.length], data: asFloat32(head) }], {
    format: "pt",
  });
}

/** The head's weights; a ConfigError when the file lacks them or their size is not `hidden`. */
export async function readRewardHead(path: string, hidden: number): Promise<Float32Array> {
  const { tensors } = await readSafetensors(path);
  return checkedHead(tensors.get(scoreTensorName), hidden, path, scoreTensorName);
}

export function checkedHead(
  tensor: { shape: number[]; data: Float32Array } | undefined,
  hidden: number,
  path: string,
  name: string,
): Float32Array {
  if (!tensor) throw new ConfigError(`has no ${name} tensor (the reward head)`, { path });
  if (tensor.data.length !== hidden || tensor.shape.length !== 2 || tensor.shape[0] !== 1) {
    throw new ConfigError(
      `${name} has shape [${tensor.shape.join(", ")}], expected [1, ${hidden}] for this base model (hidden size ${hidden}); is it the right base model?`,
      { path },
    );
  }
  return tensor.data;
}
