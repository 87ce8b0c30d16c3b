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
import { checkPromptLengths, type MeasuredStage } from "../src/pipeline/measure-stages.js";
import { parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { usageCost } from "../src/pipeline/run-budget.js";
import type { StageInstance } from "../src/pipeline/stage-context.js";
import type { StageEstimate } from "../src/pipeline/stage-definition.js";
import { trainingTokens } from "../src/stages/shared/estimate-training.js";
import { chatPrompt } from "../src/stages/engrave/prompt.js";
import { answerPrompt, ratingAspects, ratingPrompt } from "../src/stages/isheep/prompt.js";
import { judgePromptHead, judgePromptTail } from "../src/stages/salmon/judge-prompt.js";
import { reviewerPrompt, rewardPrincipleText } from "../src/stages/salmon/reviewer-prompt.js";
import {
  longestQuery,
  longestQuestionPrompt,
  longestSelfAlignPrompt,
  longestSelfInstructPrompt,
  selfAlignMetaPrompt,
} from "../src/stages/shared/longest-prompts.js";
import { isheepTestConfig } from "./fixtures/isheep-pipeline.js";

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
  const measured = (tokens: number, minTokens: number): MeasuredStage[] => [
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
  // A judge prompt: one letter scored, its length set by another stage's answers.
  const judged = measured(2100, 1500);
  const { maxTokensField: _field, ...judge } = judged[0]!.estimate.prompts[0]!;
  judged[0]!.estimate.prompts = [{ ...judge, maxTokens: 1, lengthField: "stages.salmon-responses.sampling.maxTokens" }];
  const [judgeWarning] = checkPromptLengths(loaded, judged, 2048);
  expect(judgeWarning).toContain("lower stages.salmon-responses.sampling.maxTokens or raise engine.contextSize");
});

it("estimates every SALMON stage: 2 samples per prompt, pairs x principles x 2 orders, both responses trained on", async () => {
  const train = { epochs: 2, cutoffLen: 8192, threads: 1 };
  const config = parsePipelineConfig(
    {
      name: "estimate-salmon",
      model: modelPath,
      runDir: join(dir, "salmon-run"),
      engine: { contextSize: 16384, sequences: 2, threads: 1 },
      stages: {
        "self-instruct": { target: 10, demos: 3, sampling: { maxTokens: 50 } },
        "red-team": { skip: true },
        "self-align": { skip: true },
        engrave: { skip: true },
        "verbose-clone": { skip: true },
        "salmon-responses": { skip: false, maxPrompts: 6, sampling: { maxTokens: 100 } },
        "salmon-preferences": { skip: false, principles: ["concise", "honest", "methodical"] },
        "salmon-aggregate": { skip: false, passes: 3 },
        "salmon-reward-model": { skip: false, train },
        "salmon-dpo": { skip: false, train },
        "salmon-rl": {
          skip: false,
          embedded: { rolloutBatch: 4, epochs: 1, ppoEpochs: 2, responseLength: 64, queryLength: 2048 },
        },
      },
    },
    "estimate config",
  );
  const estimate = await estimatePipeline({ loaded: { config, baseDir: dir } });
  expect(estimate.notEstimated).toEqual([]);
  const stage = (name: string) => estimate.stages.find((one) => one.stage === name)?.estimate;
  expect(estimate.stages.map((one) => one.stage)).toEqual([
    "self-instruct",
    "salmon-responses",
    "salmon-preferences",
    "salmon-aggregate",
    "salmon-reward-model",
    "salmon-dpo",
    "salmon-rl",
  ]);

  const constitution = await loadConstitution(defaultConstitutionDir());
  const salmon = constitution.salmon!;
  const backend = await createLlamaCppBackend({ model: modelPath, contextSize: 1024, threads: 1 });
  const tokens = (text: string) => backend.countTokens(text);
  const query = longestQuery(constitution);
  const { assistant } = constitution;
  try {
    // 6 of the 10 stage-1 prompts, twice each, 100 new tokens per answer.
    const policyPrompt = await tokens(chatPrompt(assistant, "concise", query.instruction, query.input));
    expect(stage("salmon-responses")).toMatchObject({
      requests: 12,
      promptTokens: 12 * policyPrompt,
      completionTokens: 1200,
      records: 12,
    });
    expect(stage("salmon-responses")!.evaluatedPromptTokens).toBeLessThanOrEqual(6 * policyPrompt);

    // 6 pairs x 3 principles x 2 orders, nothing generated; each prompt holds both answers (100 tokens each).
    const principles = salmon.rewardPrinciples.filter((one) => ["concise", "honest", "methodical"].includes(one.id));
    let judged = 0;
    for (const principle of principles) {
      const tail = judgePromptTail(assistant, principle.dimension, rewardPrincipleText(constitution, principle, false));
      judged += (await tokens(judgePromptHead(assistant, query, "", "") + tail)) + 200;
    }
    const preferences = stage("salmon-preferences")!;
    expect(preferences).toMatchObject({ requests: 36, completionTokens: 0, records: 6 });
    expect(Math.abs(preferences.promptTokens - 6 * 2 * judged)).toBeLessThanOrEqual(36);
    expect(preferences.evaluatedPromptTokens).toBeLessThan(preferences.promptTokens / 2);

    // 3 passes over 6 pairs, no model.
    expect(stage("salmon-aggregate")).toMatchObject({ requests: 0, promptTokens: 0, trainTokens: 0, records: 18 });

    // The reward model: chosen and rejected reviewer texts (8 principles at most, answers of 100 tokens), 2 epochs.
    const guideline = salmon.rewardPrinciples
      .map(
        (one) =>
          [rewardPrincipleText(constitution, one, false), rewardPrincipleText(constitution, one, true)].sort(
            (a, b) => b.length - a.length,
          )[0]!,
      )
      .sort((a, b) => b.length - a.length)
      .slice(0, 8);
    const reviewerText = [
      reviewerPrompt({ assistantName: assistant.name, ...query, response: "", guidelines: guideline }),
    ][0]!;
    const rewardSequence = (await tokens(reviewerText)) + 100;
    expect(Math.abs(stage("salmon-reward-model")!.trainTokens - 2 * 18 * 2 * rewardSequence)).toBeLessThanOrEqual(
      2 * 18 * 2 * 8,
    );
    // DPO: chosen and rejected (prompt + "\n" + answer + the end-of-turn marker) for 2 epochs, then the reference's
    // forward over them once.
    const dpoSequence =
      (await tokens(`${chatPrompt(assistant, "concise", query.instruction, query.input)}\n\n\n### User\n`)) + 100;
    expect(Math.abs(stage("salmon-dpo")!.trainTokens - (2 + 1) * 18 * 2 * dpoSequence)).toBeLessThanOrEqual(
      3 * 18 * 2 * 2,
    );

    // PPO: floor(1 epoch x 10 prompts / 4) = 2 steps of 4 rollouts; 7 passes over each rollout in the update.
    const rl = stage("salmon-rl")!;
    expect(rl).toMatchObject({ requests: 16, completionTokens: 8 * 64, records: 8 });
    expect(rl.trainTokens).toBe(8 * (policyPrompt + 64) * 7);
  } finally {
    await backend.close();
  }
  expect(estimate.speed.trainTokensPerSecond).toBeGreaterThan(0);
  const text = formatEstimate(estimate);
  expect(text).not.toContain("not estimated");
  expect(text).toMatch(/^ {2}salmon-preferences\s+36\s/m);
});

it("estimates every I-SHEEP stage of every round; round 2 is round 1 but for round 1's baseline eval", async () => {
  // The fixture's rounds, trained without its maxSteps cap.
  const loaded = isheepTestConfig(modelPath, join(dir, "isheep-run"), 2, {
    "isheep-train": { train: { rank: 2, threads: 1 } },
  });
  const estimate = await estimatePipeline({ loaded: { ...loaded, baseDir: dir } });
  expect(estimate.notEstimated).toEqual([]);
  const members = ["prompts", "answers", "filter", "rate", "keep", "train", "eval"];
  expect(estimate.stages.map((one) => one.stage)).toEqual(
    [1, 2].flatMap((round) => members.map((member) => `isheep-${member}-round-${round}`)),
  );
  const stage = (member: string, round: number) =>
    estimate.stages.find((one) => one.stage === `isheep-${member}-round-${round}`)!.estimate;

  const constitution = await loadConstitution(defaultConstitutionDir());
  const backend = await createLlamaCppBackend({ model: modelPath, contextSize: 1024, threads: 1 });
  const tokens = (text: string) => backend.countTokens(text);
  const query = longestQuery(constitution);
  try {
    // target 10 at 5 kept per call: 2 calls of 200 tokens; their 10 prompts answered in 60 tokens each.
    expect(stage("prompts", 1)).toMatchObject({ requests: 2, completionTokens: 400, records: 10 });
    const answer = await tokens(answerPrompt(query.instruction, query.input));
    expect(stage("answers", 1)).toMatchObject({
      requests: 10,
      promptTokens: 10 * answer,
      completionTokens: 600,
      records: 10,
    });
    expect(stage("filter", 1)).toMatchObject({ requests: 0, records: 10 });
    // Both aspects of each pair, 40 new tokens; each prompt holds a 60-token answer.
    let rating = 0;
    for (const aspect of ratingAspects)
      rating += (await tokens(ratingPrompt(aspect, query.instruction, query.input, ""))) + 60;
    expect(stage("rate", 1)).toMatchObject({
      requests: 20,
      promptTokens: 10 * rating,
      completionTokens: 800,
      records: 20,
    });
    expect(stage("keep", 1)).toMatchObject({ requests: 0, records: 10 });
    // 2 epochs (I-SHEEP's default) over 10 examples of the answering prompt + a 60-token answer and its end marker.
    const example = (await tokens(`${answerPrompt(query.instruction, query.input)}\n\n### End\n`)) + 60;
    expect(Math.abs(stage("train", 1).trainTokens - 2 * 10 * example)).toBeLessThanOrEqual(2 * 10 * 2);
    // 3 probes answered by the round's model and (round 1 only) the base, each rated on 2 aspects.
    expect(stage("eval", 1)).toMatchObject({ requests: 6 + 12, completionTokens: 6 * 60 + 12 * 40 });
    expect(stage("eval", 2)).toMatchObject({ requests: 3 + 6, completionTokens: 3 * 60 + 6 * 40 });
  } finally {
    await backend.close();
  }
  // Every figure of a round-2 stage is round 1's (the notes name the round).
  const figures = ({ notes: _notes, ...rest }: StageEstimate) => rest;
  for (const member of members.filter((one) => one !== "eval"))
    expect(figures(stage(member, 2))).toEqual(figures(stage(member, 1)));
  expect(stage("prompts", 2).notes.join(" ")).toContain("round 2 of 2");
  const trained = estimate.stages.filter((one) => one.estimate.trainTokens > 0);
  expect(trained.map((one) => one.stage)).toEqual(["isheep-train-round-1", "isheep-train-round-2"]);
});
