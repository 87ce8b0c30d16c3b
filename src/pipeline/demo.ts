/**
 * `selfalign demo`: the real pipeline, offline, on a tiny random-weight GGUF that it writes itself. A mechanics check
 * (every stage, resume, both adapters, the report) that runs in minutes on two cores. GBNF grammars (the stages' own
 * `grammar` option, written next to the model) keep the random model's output in each stage's format, so every stage
 * keeps records and passes them through every filter and dedup; the words inside the grammar are still random.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { defaultConstitutionDir, loadConstitution } from "../constitution/index.js";
import { writeTinyModel } from "../gguf/index.js";
import {
  questionGrammar,
  selfAlignGrammar,
  selfInstructGrammar,
  topicGrammar,
  verboseGrammar,
} from "./demo-grammars.js";
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
  // The grammars, as files a user would write (the default constitution supplies the principles they cite).
  const constitution = await loadConstitution(defaultConstitutionDir());
  const grammars = join(dir, "grammars");
  await mkdir(grammars, { recursive: true });
  const grammar = async (name: string, text: string) => {
    const path = join(grammars, `${name}.gbnf`);
    await writeFile(path, `${text}\n`);
    return path;
  };
  const { assistant } = constitution;
  const files = {
    selfInstruct: await grammar("self-instruct", selfInstructGrammar(6)),
    topics: await grammar("red-team-topics", topicGrammar),
    questions: await grammar("red-team-question", questionGrammar),
    selfAlign: await grammar(
      "self-align",
      selfAlignGrammar(constitution.principles, assistant.thoughtOpening, assistant.generationName),
    ),
    verbose: await grammar("verbose-clone", verboseGrammar),
  };
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
        "self-instruct": { target: 4, maxRounds: 2, sampling: { maxTokens: 480, grammar: files.selfInstruct } },
        "red-team": {
          epochs: 1,
          maxTopicsPerType: 1,
          topicSampling: { maxTokens: 96, grammar: files.topics },
          questionSampling: { maxTokens: 720, grammar: files.questions },
        },
        "self-align": { maxPrompts: 8, sampling: { maxTokens: 420, grammar: files.selfAlign } },
        engrave: { train },
        "verbose-clone": { maxPrompts: 8, sampling: { maxTokens: 420, grammar: files.verbose }, train },
      },
    },
    "demo config",
  );
  return { config, baseDir: dir };
}
