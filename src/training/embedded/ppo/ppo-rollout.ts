/**
 * PPO's rollouts on the embedded llama.cpp engine: the base model stays loaded, and each PPO step's policy LoRA is
 * written as a GGUF adapter and put on a fresh context (llama.cpp applies an adapter per context). Every rollout
 * starts from an empty KV cache on one sequence, flash attention off and an F32 KV cache, with a seed of its own, so
 * the same policy samples the same tokens in any process: a resumed run rolls out what an uninterrupted one did.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { LlamaModel, Token } from "node-llama-cpp";
import { getSharedLlama } from "../../../backends/llama-cpp/llama-instance.js";
import { tokenizeWithBos } from "../../../backends/llama-cpp/scorer.js";
import { GrowingText } from "../../../backends/llama-cpp/generate.js";
import { writeGgufLora } from "../../export/gguf-lora.js";
import type { LoraAdapter } from "../lora.js";
import type { LlamaConfig } from "../model-config.js";

export interface RolloutRequest {
  /** BOS + prompt tokens. */
  promptTokens: readonly number[];
  seed: number;
}

export interface RolloutSample {
  /** The sampled tokens, the stop string's or the end-of-sequence token included (what the policy is trained on). */
  tokens: number[];
  /** The response text before the stop string (or end-of-sequence). */
  text: string;
  /** It reached a stop string or end-of-sequence within the token limit. */
  stopped: boolean;
}

export interface RolloutSampling {
  temperature: number;
  topP: number;
  maxTokens: number;
  stop: readonly string[];
}

/**
 * llama.cpp keeps every adapter a model loaded until the model is disposed, so after this many steps the model is
 * loaded afresh (a few MB per adapter would otherwise pile up over a long run).
 */
const adaptersPerModel = 32;

export class PolicySampler {
  private model: LlamaModel | undefined;
  private adapters = 0;

  private constructor(
    private readonly base: string,
    private readonly dir: string,
    private readonly config: LlamaConfig,
    private readonly contextSize: number,
    private readonly threads: number,
  ) {}

  /** A sampler for the base GGUF; adapters are written under `dir`. */
  static async open(
    base: string,
    dir: string,
    config: LlamaConfig,
    options: { contextSize: number; threads: number },
  ): Promise<PolicySampler> {
    await mkdir(dir, { recursive: true });
    const sampler = new PolicySampler(
      base,
      dir,
      config,
      Math.min(options.contextSize, config.contextLength),
      options.threads,
    );
    await sampler.loadedModel();
    return sampler;
  }

  private async loadedModel(): Promise<LlamaModel> {
    if (this.model && this.adapters < adaptersPerModel) return this.model;
    await this.model?.dispose();
    const llama = await getSharedLlama(false);
    this.model = await llama.loadModel({ modelPath: this.base, gpuLayers: 0 });
    this.adapters = 0;
    return this.model;
  }

  /** BOS + tokens of `text`, as the trainer reads a sequence. */
  async tokenize(text: string): Promise<number[]> {
    return tokenizeWithBos(await this.loadedModel(), text).map(Number);
  }

  /** Sample one response per request from the base with `lora` (named by `step`, each step's adapter a new file). */
  async sample(
    lora: LoraAdapter,
    step: number,
    requests: readonly RolloutRequest[],
    sampling: RolloutSampling,
    signal?: AbortSignal,
  ): Promise<RolloutSample[]> {
    const model = await this.loadedModel();
    const path = join(this.dir, `policy-step-${step}.gguf`);
    await writeGgufLora(path, lora, this.config.architecture, "ppo-policy", this.config);
    this.adapters++;
    const context = await model.createContext({
      contextSize: this.contextSize,
      sequences: 1,
      threads: this.threads,
      lora: { adapters: [{ filePath: path, scale: 1 }] },
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    // llama.cpp has read the adapter into memory.
    await rm(path, { force: true });
    try {
      const sequence = context.getSequence();
      const samples: RolloutSample[] = [];
      for (const request of requests) {
        if (signal?.aborted) break;
        await sequence.clearHistory();
        const room = this.contextSize - request.promptTokens.length - 1;
        samples.push(
          await sampleOne(model, sequence, request, { ...sampling, maxTokens: Math.min(sampling.maxTokens, room) }),
        );
      }
      return samples;
    } finally {
      await context.dispose();
    }
  }

  async dispose(): Promise<void> {
    await this.model?.dispose();
    this.model = undefined;
  }
}

async function sampleOne(
  model: LlamaModel,
  sequence: ReturnType<Awaited<ReturnType<LlamaModel["createContext"]>>["getSequence"]>,
  request: RolloutRequest,
  sampling: RolloutSampling,
): Promise<RolloutSample> {
  const prompt = request.promptTokens as Token[];
  const tail = prompt.slice(-16);
  const growing = new GrowingText(model, tail);
  const longest = Math.max(0, ...sampling.stop.map((s) => s.length));
  const generated: Token[] = [];
  let checked = 0;
  if (sampling.maxTokens < 1) return { tokens: [], text: "", stopped: false };
  for await (const token of sequence.evaluate(prompt, {
    temperature: sampling.temperature,
    topP: sampling.topP,
    topK: 0,
    minP: 0,
    seed: request.seed,
    yieldEogToken: true,
  })) {
    generated.push(token);
    if (model.isEogToken(token)) {
      return {
        tokens: generated.map(Number),
        text: model.detokenize(generated.slice(0, -1), false, tail),
        stopped: true,
      };
    }
    const text = growing.textOf(generated);
    let cut = -1;
    for (const stop of sampling.stop) {
      const at = text.indexOf(stop, Math.max(0, checked - longest));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    checked = text.length;
    if (cut >= 0) return { tokens: generated.map(Number), text: text.slice(0, cut), stopped: true };
    if (generated.length >= sampling.maxTokens) return { tokens: generated.map(Number), text, stopped: false };
  }
  return { tokens: generated.map(Number), text: growing.textOf(generated), stopped: false };
}
