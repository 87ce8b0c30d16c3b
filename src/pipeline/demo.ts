/**
 * `selfalign demo`: the real pipeline, offline, on a tiny random-weight GGUF that it writes itself. A mechanics check
 * (every stage, resume, both adapters, the report) that runs in minutes on two cores; with random weights the texts
 * are nonsense and most generations are rightly rejected by the filters.
 */
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { writeTinyModel } from "../gguf/index.js";
import type { LoadedPipelineConfig } from "./pipeline-config.js";
import { parsePipelineConfig } from "./pipeline-config.js";

export interface DemoOptions {
  /** Folder for the model and the run. Default runs/demo. */
  dir?: string;
  /** Seed of the tiny model and the run. Default 7. */
  seed?: number;
  /** Bit-reproducible engine (see `engine.deterministic`). Default false. */
  deterministic?: boolean;
}

/** The demo's model and config (small counts, short generations, a few training steps). */
export async function prepareDemo(options: DemoOptions = {}): Promise<LoadedPipelineConfig> {
  const dir = resolve(options.dir ?? "runs/demo");
  await mkdir(dir, { recursive: true });
  const modelPath = join(dir, "tiny-demo.gguf");
  // Byte-level vocabulary: every character is a token, so the ~9,000-character stage-2 meta-prompt needs a long context.
  await writeTinyModel(modelPath, {
    layers: 2,
    dim: 64,
    heads: 4,
    kvHeads: 2,
    ffn: 128,
    contextLength: 16384,
    seed: options.seed ?? 7,
  });
  const train = {
    trainer: "embedded",
    rank: 4,
    alpha: 8,
    maxSteps: 12,
    learningRate: 3e-3,
    batchTokens: 4096,
    checkpointEvery: 4,
    threads: 1,
  };
  const config = parsePipelineConfig(
    {
      name: "demo",
      model: modelPath,
      runDir: join(dir, "run"),
      seed: options.seed ?? 7,
      engine: { contextSize: 16384, sequences: 2, threads: 1, deterministic: options.deterministic ?? false },
      stages: {
        "self-instruct": { target: 4, maxRounds: 2, sampling: { maxTokens: 192 } },
        "red-team": {
          epochs: 1,
          maxTopicsPerType: 2,
          topicSampling: { maxTokens: 48 },
          questionSampling: { maxTokens: 96 },
        },
        "self-align": { sampling: { maxTokens: 96 } },
        engrave: { train },
        "verbose-clone": { maxPrompts: 12, sampling: { maxTokens: 256 }, train },
      },
    },
    "demo config",
  );
  return { config, baseDir: dir };
}
