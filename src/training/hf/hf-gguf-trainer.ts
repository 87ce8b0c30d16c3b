/**
 * The GPU trainer for a pipeline whose later stages run on llama.cpp: transformers trains the Hugging Face form of
 * the base model (`hfBase`), and the PEFT adapter it saves is converted to a GGUF LoRA for the GGUF base (the
 * request's `base`), q/k rows permuted for llama.cpp's RoPE (export/qk-permutation.ts). `adapterPath` is then the
 * GGUF, which node-llama-cpp loads.
 */
import { join, resolve } from "node:path";
import { convertPeftToGgufLora } from "../export/peft-adapter.js";
import type { Trainer, TrainRequest, TrainResult } from "../trainer.js";
import { HfTrainer, type HfTrainerOptions } from "./hf-trainer.js";

export interface HfGgufTrainerOptions extends HfTrainerOptions {
  /** The base model as transformers loads it: a Hugging Face folder or hub id (see resolveHfBase). */
  hfBase: string;
}

export class HfGgufTrainer implements Trainer {
  readonly name = "hf";
  readonly #hfBase: string;
  readonly #trainer: HfTrainer;

  constructor(options: HfGgufTrainerOptions) {
    const { hfBase, ...hf } = options;
    this.#hfBase = hfBase;
    this.#trainer = new HfTrainer(hf);
  }

  /** `request.base` is the GGUF the adapter is for; training reads `hfBase`. */
  async train(request: TrainRequest): Promise<TrainResult> {
    const result = await this.#trainer.train({ ...request, base: this.#hfBase });
    const adapterPath = join(resolve(request.output), "adapter.gguf");
    if (result.worker) return { ...result, adapterPath };
    const adapter = await convertPeftToGgufLora(result.peftDir, request.base, adapterPath);
    request.onProgress?.({
      type: "message",
      level: "info",
      text: `hf trainer: converted the PEFT adapter (rank ${adapter.rank}, ${adapter.modules.length} modules) to ${adapterPath}`,
    });
    return { ...result, adapterPath };
  }
}
