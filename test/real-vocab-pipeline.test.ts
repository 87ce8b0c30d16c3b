/**
 * A user's first run, rehearsed on random-weight models with real tokenizers (Llama 3's and Qwen2's, from llama.cpp's
 * source as node-llama-cpp ships it): self-instruct, then self-align with the default constitution's full
 * meta-prompt, then engraving with the embedded trainer, one run directory, through the real engine. Grammars keep
 * the random model's output in each stage's format (random weights pick the words), so the parsers and filters see
 * real traffic tokenised by a real vocabulary; the adapter is loaded back by node-llama-cpp.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRecordsFile, withRun } from "./fixtures/stage-files.js";
import { writeTinyModelWithVocabulary } from "./fixtures/llama-cpp-vocabularies.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import type { AnswerRecord } from "../src/stages/engrave/build-sft.js";
import { runEngrave } from "../src/stages/engrave/run.js";
import { buildSelfAlignMetaPrompt } from "../src/stages/self-align/prompt.js";
import { runSelfAlign } from "../src/stages/self-align/run.js";
import { runSelfInstruct } from "../src/stages/self-instruct/run.js";
import { readStagePrompts } from "../src/stages/shared/stage-prompts.js";
import { readStageRecords } from "../src/stages/shared/stage-records.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";

const selfInstructGrammar = `root ::= " " body "\\n6. Input:\\n" inp "\\n###\\n7. Instruction: " body "\\n7. Input:\\n" inp "\\n###\\n8. Instruction: " body "\\n8. Input:\\n" inp "\\n###\\n"
body ::= verb " " w " " w " " w " " w "." | "Hi there."
verb ::= "Write" | "Explain" | "Describe" | "Summarize"
w ::= "cats" | "dogs" | "rivers" | "tea" | "maps" | "laws" | "stars" | "bread"
inp ::= "<noinput>" | "The river is long."`;

// The default constitution's assistant (Hadley while generating) and its numbered principles.
const selfAlignGrammar = `root ::= " I am a careful, honest and helpful assistant. " topic w ". I should follow rules " r ".\\n\\nHadley: " body
topic ::= "The user asks about " | "Clearly this is about "
r ::= "1 (ethical)" | "2 (informative)" | "3 (helpful)" | "1 (ethical), 3 (helpful)"
body ::= "First the " s "Next the " s "Then the " s "After that the " s "Finally the " s "In short the " s "\\n\\n### User"
s ::= w " is " w " and " w ". "
w ::= "cat" | "river" | "lamp" | "tree" | "stone"`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-real-pipeline-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.each(["llama-bpe", "qwen2"])("the first stages on a random model with the %s tokenizer", (name) => {
  // About a minute on two idle cores: three stages and a training run on a 128K-152K-token vocabulary.
  it("self-instruct, self-align and engrave run end to end and the adapter loads", { timeout: 400_000 }, async () => {
    const modelPath = join(dir, `${name}.gguf`);
    await writeTinyModelWithVocabulary(modelPath, name, {
      layers: 2,
      dim: 64,
      heads: 4,
      kvHeads: 2,
      ffn: 128,
      seed: 5,
    });
    const constitution = await loadConstitution(defaultConstitutionDir());
    const runDir = join(dir, `run-${name}`);
    const backend = await createLlamaCppBackend({
      model: modelPath,
      contextSize: 4096,
      sequences: 2,
      threads: 1,
      seed: 1,
    });
    try {
      // The stage-2 meta-prompt (principles + exemplars) is a few thousand tokens under a real tokenizer.
      const metaPromptTokens = await backend.countTokens(buildSelfAlignMetaPrompt(constitution));
      expect(metaPromptTokens).toBeGreaterThan(1000);
      expect(metaPromptTokens).toBeLessThan(3500);

      const instruct = await withRun(runDir, async (run) =>
        runSelfInstruct({
          backend,
          store: await run.stage("self-instruct"),
          constitution,
          target: 4,
          maxRounds: 2,
          demos: 2,
          batchSize: 2,
          sampling: { grammar: selfInstructGrammar, maxTokens: 160 },
        }),
      );
      expect(instruct.counts.kept).toBeGreaterThan(0);
      const inputs = await readStagePrompts({
        upstreamRecords: <T>(stage: string) => readStageRecords(runDir, stage) as Promise<T[]>,
      });
      expect(inputs.length).toBe(instruct.counts.kept);

      const align = await withRun(runDir, async (run) =>
        runSelfAlign({
          backend,
          store: await run.stage("self-align"),
          constitution,
          inputs: inputs.slice(0, 3),
          concurrency: 2,
          sampling: { grammar: selfAlignGrammar, maxTokens: 200, temperature: 1 },
        }),
      );
      const records = await readRecordsFile(join(runDir, "self-align", "records.jsonl"));
      const rejected = await readRecordsFile(join(runDir, "self-align", "rejected.jsonl"));
      expect(records.length + rejected.length).toBe(Math.min(3, inputs.length));
      expect(align.counts.kept).toBeGreaterThan(0);
      for (const record of records) {
        expect(String(record.output)).not.toContain("Hadley");
        expect(record.citedPrinciples as string[]).not.toHaveLength(0);
      }

      const answers = records as unknown as AnswerRecord[];
      const engrave = await withRun(runDir, async (run) =>
        runEngrave({
          store: await run.stage("engrave"),
          answers,
          constitution,
          trainer: new EmbeddedTrainer(),
          base: modelPath,
          trainOptions: { rank: 4, alpha: 8, maxSteps: 4, learningRate: 1e-2, threads: 1, checkpointEvery: 0 },
        }),
      );
      expect(engrave.train.finalLoss).toBeLessThan(engrave.train.lossCurve[0]!.loss);

      // node-llama-cpp applies the adapter, and it makes the engraved completions more likely.
      const example = (await readRecordsFile(engrave.files.sft))[0] as { prompt: string; completion: string };
      const tuned = await createLlamaCppBackend({
        model: modelPath,
        contextSize: 4096,
        sequences: 1,
        threads: 1,
        lora: [{ path: engrave.train.adapterPath }],
      });
      try {
        const [before] = await backend.score(example.prompt, [example.completion]);
        const [after] = await tuned.score(example.prompt, [example.completion]);
        expect(after!.tokens.map((t) => t.token)).toEqual(before!.tokens.map((t) => t.token));
        expect(after!.logprob).toBeGreaterThan(before!.logprob);
      } finally {
        await tuned.close();
      }
    } finally {
      await backend.close();
    }
  });
});
