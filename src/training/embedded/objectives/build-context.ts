/** What every objective builder gets from the trainer's prepare step. */
import type { LoadedAdapter } from "../adapter-source.js";
import type { ResolvedTrainOptions } from "../embedded-trainer.js";
import type { LlamaConfig } from "../model-config.js";
import type { TrainTokenizer } from "../sft-dataset.js";

export interface ObjectiveBuildContext {
  /** Path of the base model. */
  base: string;
  tokenizer: TrainTokenizer;
  /** Longest sequence in tokens. */
  maxLength: number;
  options: ResolvedTrainOptions;
  config: LlamaConfig;
  /** The adapter training starts from (`initAdapter`), when given. */
  init?: LoadedAdapter;
}
