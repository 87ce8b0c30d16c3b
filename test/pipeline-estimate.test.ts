/**
 * `selfalign run --estimate`: each stage's tokens come from its options and the run model's tokenizer, the time is
 * those tokens over speeds measured on the real engine, the cost is at the model's price, and nothing is written.
 * Tiny model (real llama.cpp), SELF-ALIGN's generation stages; the trainer's part is checked on its own.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { formatEstimate } from "../src/cli/commands/run.js";
import { defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { estimatePipeline } from "../src/pipeline/estimate-pipeline.js";
import { checkPromptLengths } from "../src/pipeline/measure-stages.js";
import { parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { usageCost } from "../src/pipeline/run-budget.js";
import type { StageInstance } from "../src/pipeline/stage-context.js";
import { trainingTokens } from "../src/stages/shared/estimate-training.js";
import {
  longestQuestionPrompt,
  longestSelfAlignPrompt,
  longestSelfInstructPrompt,
  selfAlignMetaPrompt,
} from "../src/stages/shared/longest-prompts.js";

let dir: string;
let modelPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-estimate-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, {
    layers: 2,
    dim: 64,
    heads: 4,
    kvHeads: 2,
    ffn: 128,
    contextLength: 16384,
    seed: 3,
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it("counts each stage's tokens from its options and the tokenizer, and times them with the measured speeds", async () => {
  const runDir = join(dir, "run");
  const config = parsePipelineConfig(
    {
      name: "estimate",
      model: modelPath,
      runDir,
      engine: { contextSize: 16384, sequences: 2, threads: 1 },
      stages: {
        "self-instruct": { target: 12, demos: 3, sampling: { maxTokens: 200 } },
        "red-team": { epochs: 2, maxTopicsPerType: 2, targetsPerPrompt: 4, questionSampling: { maxTokens: 100 } },
        "self-align": { maxPrompts: 7, sampling: { maxTokens: 300 } },
        engrave: { skip: true },
        "verbose-clone": { skip: true },
      },
    },
    "estimate config",
  );
  const estimate = await estimatePipeline({ loaded: { config, baseDir: dir } });
  // Nothing ran: no run folder.
  await expect(readdir(runDir)).rejects.toThrow();

  const constitution = await loadConstitution(defaultConstitutionDir());
  const backend = await createLlamaCppBackend({ model: modelPath, contextSize: 1024, threads: 1 });
  const tokens = (text: string) => backend.countTokens(text);
  const [instruct, question, align, meta] = [
    await tokens(longestSelfInstructPrompt(constitution, 3)),
    await tokens(longestQuestionPrompt(constitution, 5, 4)),
    await tokens(longestSelfAlignPrompt(constitution)),
    await tokens(selfAlignMetaPrompt(constitution)),
  ];
  await backend.close();
  const stage = (name: string) => estimate.stages.find((one) => one.stage === name)!;
  const types = constitution.redTeamTypes.length;

  // Stage 1a: ceil(12 / 5 kept per round) = 3 rounds of the 3-demo prompt and 200 new tokens.
  expect(stage("self-instruct").estimate).toMatchObject({
    requests: 3,
    promptTokens: 3 * instruct,
    completionTokens: 600,
    records: 12,
  });
  // Stage 1b: 1 topic per type, then 2 (the cap); questions for 2 topics per type, 4 per prompt.
  const questionPrompts = Math.ceil((types * 2) / 4);
  const redTeam = stage("red-team").estimate;
  expect(redTeam.requests).toBe(types * (1 + 2) + questionPrompts);
  expect(redTeam.records).toBe(types * 2);
  expect(redTeam.prompts.find((prompt) => prompt.label === "question prompt")!.tokens).toBe(question);
  expect(redTeam.completionTokens).toBe(types * 3 * 128 + questionPrompts * 100);
  // Stage 2: maxPrompts of the 12 + 40 stage-1 prompts; the meta-prompt evaluated once.
  expect(stage("self-align").estimate).toMatchObject({
    requests: 7,
    promptTokens: 7 * align,
    evaluatedPromptTokens: meta + 7 * (align - meta),
    completionTokens: 7 * 300,
  });
  expect(align - meta).toBeGreaterThan(0);
  expect(align - meta).toBeLessThan(meta / 10);

  const { speed } = estimate;
  expect(speed.promptTokensPerSecond).toBeGreaterThan(0);
  expect(speed.decodeTokensPerSecond).toBeGreaterThan(0);
  expect(speed.decodeSequences).toBe(2);
  expect(speed.cpuShare).toBeGreaterThan(0);
  expect(speed.cpuShare).toBeLessThanOrEqual(1.05);
  for (const one of estimate.stages) {
    const expected =
      one.estimate.evaluatedPromptTokens / speed.promptTokensPerSecond +
      one.estimate.completionTokens / speed.decodeTokensPerSecond;
    expect(one.seconds).toBeCloseTo(expected, 6);
  }
  expect(estimate.total.seconds).toBeCloseTo(
    estimate.stages.reduce((sum, one) => sum + one.seconds, 0),
    6,
  );
  expect(estimate.total.cost).toBeUndefined();
  const text = formatEstimate(estimate);
  expect(text).toMatch(/^ {2}self-align\s+7\s/m);
  expect(text).toMatch(/^ {2}total\s/m);
  expect(text).not.toContain("cost");
});

it("trains epochs x examples x the cut length, capped by maxSteps; costs at the price per million tokens", () => {
  expect(trainingTokens({ trainer: "embedded", overlong: "truncate" }, { examples: 10, exampleTokens: 300 })).toBe(
    3000,
  );
  expect(
    trainingTokens(
      { trainer: "embedded", overlong: "truncate", epochs: 2, cutoffLen: 256 },
      { examples: 10, exampleTokens: 300 },
    ),
  ).toBe(2 * 10 * 256);
  expect(
    trainingTokens(
      { trainer: "embedded", overlong: "truncate", epochs: 3, maxSteps: 2, batchTokens: 1000 },
      { examples: 10, exampleTokens: 300 },
    ),
  ).toBe(2000);
  expect(usageCost({ promptTokens: 2_000_000, completionTokens: 500_000 }, { prompt: 0.5, completion: 2 })).toBe(2);
});

it("a prompt whose longest form overflows but whose fixed part fits is a warning, not an error", () => {
  const instance = { name: "self-align", definition: { name: "self-align" } } as unknown as StageInstance;
  const prompt = { label: "prompt", maxTokens: 256, maxTokensField: "sampling.maxTokens", role: "generator" as const };
  const measured = (tokens: number, minTokens: number) => [
    {
      instance,
      estimate: {
        requests: 1,
        promptTokens: tokens,
        evaluatedPromptTokens: tokens,
        completionTokens: 256,
        trainTokens: 0,
        records: 1,
        prompts: [{ ...prompt, tokens, minTokens }],
        notes: [],
      },
    },
  ];
  const loaded = { config: {} as never, baseDir: "." };
  expect(checkPromptLengths(loaded, measured(1000, 900), 2048)).toEqual([]);
  const [warning] = checkPromptLengths(loaded, measured(2000, 1500), 2048);
  expect(warning).toContain("lower stages.self-align.sampling.maxTokens to 48 or raise engine.contextSize");
  expect(() => checkPromptLengths(loaded, measured(2000, 1900), 2048)).toThrow(
    /lower stages\.self-align\.sampling\.maxTokens to at most 148/,
  );
});
