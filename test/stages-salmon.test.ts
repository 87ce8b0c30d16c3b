/**
 * SALMON part 1 on tiny GGUFs through the real engine: response sampling (a grammar makes the random model write
 * short, long and heading-cut answers), judging in both orders (the swap mirrors s12 and s21 exactly; ties and
 * disagreements give no preference), the four stages end to end through `selfalign run` (responses -> preferences ->
 * aggregate -> reward model, exports, report), and a kill -9 during the preferences that resumes to the records of
 * an uninterrupted run; the HTML report of the run opened in headless Chromium.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLlamaCppBackend, type LlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
import { collectReportData, writeReport } from "../src/report/index.js";
import { readJsonl } from "../src/run-store/index.js";
import { judgePrompt, judgePromptHead, judgePromptTail } from "../src/stages/salmon/judge-prompt.js";
import { judgePair, pairResponses, preferenceOf, type ResponsePair } from "../src/stages/salmon/preferences.js";
import { minResponseLength, runSalmonResponses, type SalmonResponseRecord } from "../src/stages/salmon/responses.js";
import { REVIEWER_CUE, rewardPrincipleText } from "../src/stages/salmon/reviewer-prompt.js";
import { RewardModel } from "../src/training/reward/reward-model.js";
import { chromiumArgs, chromiumPath } from "./fixtures/chromium.js";
import { salmonConfig, type SalmonTestUpTo, salmonTestPrinciples } from "./fixtures/salmon-pipeline.js";
import { writeAgreeingJudge } from "./fixtures/salmon-judge.js";
import { readRecordsFile, withRun } from "./fixtures/stage-files.js";
import { fileSize, killWhen } from "./fixtures/kill-when.js";

const modelOptions = { seed: 5, contextLength: 2048 };
let dir: string;
let policy: string;
let judgeModel: string;
let promptsFile: string;
let constitution: Constitution;
let backend: LlamaCppBackend;

const prompts = [
  "Write a short poem about the sea.",
  "What is the capital of France?",
  "Explain how a bicycle works.",
  "Give me three tips for sleeping well.",
  "Why is the sky blue?",
  "Name a good book for a long train ride.",
];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-salmon-"));
  policy = join(dir, "tiny.gguf");
  judgeModel = join(dir, "judge.gguf");
  promptsFile = join(dir, "prompts.jsonl");
  await writeTinyModel(policy, modelOptions);
  await writeFile(promptsFile, `${prompts.map((instruction) => JSON.stringify({ instruction })).join("\n")}\n`);
  constitution = await loadConstitution(defaultConstitutionDir());
  backend = await createLlamaCppBackend({ model: policy, contextSize: 2048, sequences: 2, threads: 1, seed: 1 });
});

afterAll(async () => {
  await backend?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const run = (runDir: string, upTo: SalmonTestUpTo, judge = judgeModel) =>
  runPipeline({ loaded: salmonConfig(policy, judge, runDir, promptsFile, upTo) });

describe("salmon-responses", () => {
  it("samples two answers per prompt, cuts them at the first ###, and rejects those under 16 characters", async () => {
    const grammar = `root ::= "Short." | "A full answer about the " w " and the " w "." | "Here are some steps.\\n### Step two\\nthe rest"
w ::= "sea" | "sky" | "road"`;
    const inputs = [
      ...prompts.map((instruction, i) => ({ id: `p${i}`, instruction })),
      { id: "long", instruction: "Summarise this.", input: "word ".repeat(700) },
    ];
    const out = await withRun(join(dir, "responses"), async (opened) =>
      runSalmonResponses({
        policy: backend,
        store: await opened.stage("salmon-responses"),
        prompts: inputs,
        constitution,
        // A high temperature spreads the samples over the grammar's three answers.
        sampling: { grammar, maxTokens: 60, temperature: 4 },
        seed: 3,
      }),
    );
    const kept = await readRecordsFile(join(dir, "responses", "salmon-responses", "records.jsonl"));
    const rejected = await readRecordsFile(join(dir, "responses", "salmon-responses", "rejected.jsonl"));
    expect(out.counts).toEqual({ kept: kept.length, rejected: rejected.length, prompts: inputs.length });
    // Two outputs per prompt: samples 0 and 1, with their own seeds.
    for (const input of inputs) {
      const mine = [...kept, ...rejected].filter((record) => record.parentId === input.id);
      expect(mine.map((record) => record.sample).sort()).toEqual([0, 1]);
    }
    const overflow = rejected.filter((record) => record.parentId === "long");
    expect(overflow.map((record) => record.filter)).toEqual(["context-overflow", "context-overflow"]);
    expect(overflow.every((record) => record.retryOf === "long")).toBe(true);
    const answered = [...kept, ...rejected].filter((record) => record.parentId !== "long");
    expect(new Set(answered.map((record) => record.seed)).size).toBe(answered.length);
    for (const record of kept) {
      expect(String(record.output)).not.toContain("###");
      expect(String(record.output).length).toBeGreaterThanOrEqual(minResponseLength);
      expect(record.ended).toBe(record.finishReason === "stop");
    }
    const floor = rejected.filter((record) => record.filter === "length-floor");
    expect(floor.length + kept.length).toBe(answered.length);
    expect(floor.every((record) => record.output === "Short.")).toBe(true);
    // The grammar's three answers were all drawn: kept, cut at the heading, and too short.
    expect(kept.some((record) => record.output === "Here are some steps.")).toBe(true);
    expect(kept.some((record) => String(record.output).startsWith("A full answer"))).toBe(true);
    expect(floor.length).toBeGreaterThan(0);
  });
});

describe("judging a pair", () => {
  const pair: ResponsePair = {
    id: "pair",
    parentId: "prompt",
    instruction: "Name a colour.",
    input: "",
    output1: "Blue, like the sky on a clear day.",
    output2: "Green.",
    responseIds: ["r0", "r1"],
    ended: [true, true],
  };
  const swapped: ResponsePair = { ...pair, output1: pair.output2, output2: pair.output1 };

  // Equal to float32 rounding: the batched scorer's results depend at that level on which calls shared a decode.
  it("reads s12 and s21 from the option letters in both orders; swapping the answers mirrors them", async () => {
    const principles = constitution.salmon!.rewardPrinciples.slice(0, 3);
    const judged = await judgePair(backend, pair, principles, constitution);
    const mirrored = await judgePair(backend, swapped, principles, constitution);
    for (const [index, principle] of principles.entries()) {
      const one = judged[index]!;
      // Independently: each order's prompt scored on its own, the letters' log-probability difference.
      const definition = rewardPrincipleText(constitution, principle, false);
      const letters = async (first: string, second: string) => {
        const [a, b] = await backend.score(
          judgePrompt(constitution.assistant, pair, first, second, { dimension: principle.dimension, definition }),
          ["a", "b"],
        );
        return a!.logprob - b!.logprob;
      };
      expect(one.s12).toBeCloseTo(await letters(pair.output1, pair.output2), 5);
      expect(one.s21).toBeCloseTo(-(await letters(pair.output2, pair.output1)), 5);
      expect(one.preference).toBe(preferenceOf(one.s12, one.s21));
      // The swapped pair is judged from the same two prompts: its s12 is our -s21 and its s21 our -s12.
      expect(mirrored[index]!.s12).toBeCloseTo(-one.s21, 5);
      expect(mirrored[index]!.s21).toBeCloseTo(-one.s12, 5);
      expect(mirrored[index]!.preference).toBe(([0, 2, 1] as const)[one.preference]);
    }
  });

  it("prefers only when both orders agree; a zero or a disagreement is no preference", () => {
    expect(preferenceOf(0.3, 0.1)).toBe(1);
    expect(preferenceOf(-0.3, -0.1)).toBe(2);
    expect(preferenceOf(0.3, -0.1)).toBe(0);
    expect(preferenceOf(-0.3, 0.1)).toBe(0);
    expect(preferenceOf(0, 0.5)).toBe(0);
    expect(preferenceOf(0.5, 0)).toBe(0);
    expect(preferenceOf(0, 0)).toBe(0);
  });

  it("lays the prompt out so the principle comes after both outputs (a prefix shared across principles)", () => {
    const [first, second] = constitution.salmon!.rewardPrinciples;
    const head = judgePromptHead(constitution.assistant, pair, pair.output1, pair.output2);
    for (const principle of [first!, second!]) {
      const prompt = judgePrompt(constitution.assistant, pair, pair.output1, pair.output2, principle);
      expect(prompt.startsWith(head)).toBe(true);
      expect(prompt.slice(head.length)).toBe(
        judgePromptTail(constitution.assistant, principle.dimension, principle.definition),
      );
      expect(prompt.endsWith(`the more ${principle.dimension} output is Output (`)).toBe(true);
    }
    expect(head.indexOf(pair.output1)).toBeLessThan(head.indexOf(pair.output2));
  });
});

/** An export file's rows (plain JSONL: no ids, as other tools read it). */
async function jsonLines(path: string): Promise<Array<Record<string, string>>> {
  const text = await readFile(path, "utf8");
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as Record<string, string>);
}

/** Write the judge: the tiny model, made to prefer answer 1 of the first pair in both orders (see salmon-judge.ts). */
async function prepareJudge(runDir: string): Promise<void> {
  await run(runDir, "responses", policy);
  const responses = (await readJsonl<SalmonResponseRecord>(join(runDir, "salmon-responses", "records.jsonl"))).records;
  const [pair] = pairResponses(responses, 42);
  const principle = constitution.salmon!.rewardPrinciples.find((p) => p.id === salmonTestPrinciples[0])!;
  const tail = judgePromptTail(
    constitution.assistant,
    principle.dimension,
    rewardPrincipleText(constitution, principle, false),
  );
  await writeAgreeingJudge(policy, judgeModel, modelOptions, {
    order12: judgePromptHead(constitution.assistant, pair!, pair!.output1, pair!.output2) + tail,
    order21: judgePromptHead(constitution.assistant, pair!, pair!.output2, pair!.output1) + tail,
  });
}

describe("the SALMON stages through `selfalign run`", () => {
  const runDir = () => join(dir, "pipeline");
  beforeAll(async () => {
    await prepareJudge(runDir());
  });

  it("run responses -> preferences -> aggregate -> reward model, with exports, a reward model and a report", async () => {
    const result = await run(runDir(), "all");
    const status = Object.fromEntries(result.stages.map((stage) => [stage.stage, stage]));
    expect(status["self-align"]?.status).toBe("skipped");
    expect(status["salmon-responses"]).toMatchObject({ status: "up-to-date" });
    expect(status["salmon-preferences"]).toMatchObject({ status: "ran", rejected: 0 });
    const responses = await readJsonl<SalmonResponseRecord>(join(runDir(), "salmon-responses", "records.jsonl"));
    const pairs = pairResponses(responses.records, 42);
    expect(status["salmon-preferences"]?.kept).toBe(pairs.length);
    expect(pairs.length).toBeGreaterThanOrEqual(4);

    const judged = await readRecordsFile(join(runDir(), "salmon-preferences", "records.jsonl"));
    for (const record of judged) {
      const judgments = record.judgments as Array<{ principle: string; s12: number; s21: number; preference: number }>;
      expect(judgments.map((j) => j.principle)).toEqual(salmonTestPrinciples);
      for (const j of judgments) expect(j.preference).toBe(preferenceOf(j.s12, j.s21));
    }
    // The prepared pair: answer 1 preferred in both orders under the first principle.
    const prepared = judged.find((record) => record.id === pairs[0]!.id)!;
    const first = (prepared.judgments as Array<{ s12: number; s21: number; preference: number }>)[0]!;
    expect(first.preference).toBe(1);
    expect(first.s12).toBeCloseTo(1, 3);
    expect(first.s21).toBeCloseTo(1, 3);
    // 2 x principles score calls per pair, each in the token ledger.
    const ledger = await readRecordsFile(join(runDir(), "salmon-preferences", "usage.jsonl"));
    expect(ledger).toHaveLength(pairs.length * salmonTestPrinciples.length * 2);

    // Aggregation: (pass, pair) draws, every one labelled or rejected with a reason.
    const examples = await readRecordsFile(join(runDir(), "salmon-aggregate", "records.jsonl"));
    const skipped = await readRecordsFile(join(runDir(), "salmon-aggregate", "rejected.jsonl"));
    expect(examples.length).toBeGreaterThan(0);
    expect(examples.length + skipped.length).toBe(4 * pairs.length);
    for (const example of examples) {
      const principles = example.principles as string[];
      expect(principles.every((id) => salmonTestPrinciples.includes(id))).toBe(true);
      expect((example.negated as boolean[]).length).toBe(principles.length);
      const scores = example.scores as number[];
      const dominant = example.dominant as number;
      expect(Math.abs(scores[dominant]!)).toBe(Math.max(...scores.map(Math.abs)));
      expect(example.chosen).toBe(example.preference === 1 ? example.output1 : example.output2);
      expect(example.prompt).toContain(String(example.instruction));
    }
    // Exports: the policy's pairs and the reward model's, in TRL's / OpenRLHF's prompt / chosen / rejected shape.
    const preferences = await jsonLines(join(runDir(), "salmon-aggregate", "preferences.jsonl"));
    const rewardPairs = await jsonLines(join(runDir(), "salmon-aggregate", "reward-pairs.jsonl"));
    expect(preferences).toHaveLength(examples.length);
    expect(rewardPairs).toHaveLength(examples.length);
    for (const [i, row] of preferences.entries()) {
      expect(Object.keys(row).sort()).toEqual(["chosen", "prompt", "rejected"]);
      expect(row.prompt).toBe(examples[i]!.prompt);
      expect(row.chosen!.startsWith(`\n${String(examples[i]!.chosen)}`)).toBe(true);
      const reward = rewardPairs[i]!;
      expect((reward.prompt! + reward.chosen!).endsWith(REVIEWER_CUE)).toBe(true);
      // The answer under review comes first, right after the prompt part; the principles follow it.
      expect(reward.chosen!.startsWith(String(examples[i]!.chosen))).toBe(true);
      expect(reward.chosen!.indexOf(String(examples[i]!.instruction))).toBeGreaterThan(0);
    }
    expect((await stat(join(runDir(), "salmon-aggregate", "reward-pairs.parquet"))).size).toBeGreaterThan(0);
    expect(await readFile(join(runDir(), "salmon-aggregate", "README.md"), "utf8")).toContain("reward-pairs");

    // The reward model: trained through the trainer's reward objective, exported, and read by llama.cpp.
    expect(status["salmon-reward-model"]).toMatchObject({ status: "ran", kept: examples.length });
    expect(status["salmon-reward-model"]?.adapter).toBeUndefined();
    const rm = join(runDir(), "salmon-reward-model", "reward-model");
    for (const file of ["adapter.gguf", "reward-head.safetensors", "reward-model.json", "loss.jsonl", "eval.jsonl"])
      expect((await stat(join(rm, file))).size).toBeGreaterThan(0);
    expect((await stat(join(rm, "peft", "adapter_model.safetensors"))).size).toBeGreaterThan(0);
    const evals = await jsonLines(join(rm, "eval.jsonl"));
    expect(evals.length).toBeGreaterThanOrEqual(2);
    expect(evals.every((point) => typeof (point as Record<string, unknown>).accuracy === "number")).toBe(true);
    const reward = await RewardModel.load(rm, { threads: 1 });
    try {
      const [r1, r2] = await reward.score([
        rewardPairs[0]!.prompt! + rewardPairs[0]!.chosen!,
        rewardPairs[0]!.prompt! + rewardPairs[0]!.rejected!,
      ]);
      expect(Number.isFinite(r1)).toBe(true);
      expect(r1).not.toBe(r2);
    } finally {
      await reward.dispose();
    }

    // The report: preference records readable, the SALMON panels filled.
    const report = await collectReportData(runDir());
    const judgedRecords = report.records.filter((record) => record.stage === "salmon-preferences");
    expect(judgedRecords).toHaveLength(pairs.length);
    expect(judgedRecords[0]!.thoughts).toMatch(/^concise: s12 -?\d/);
    expect(judgedRecords[0]!.labels?.thoughts).toBe("judgments (s12, s21)");
    expect(report.salmon.principles.map((row) => row.principle)).toEqual(salmonTestPrinciples);
    const agreeing = judged.flatMap((record) => record.judgments as Array<{ principle: string; preference: number }>);
    const concise = report.salmon.principles[0]!;
    expect(concise.pairs).toBe(pairs.length);
    expect(concise.agree).toBe(agreeing.filter((j) => j.principle === "concise" && j.preference !== 0).length);
    expect(report.salmon.labels.examples).toBe(examples.length);
    expect(report.salmon.labels.preference1 + report.salmon.labels.preference2).toBe(examples.length);
    expect(report.evalCurves.some((curve) => curve.name.includes("salmon-reward-model"))).toBe(true);
    // ... and the same in the HTML report, opened in headless Chromium.
    await expectReportRenders(runDir(), report, {
      judged: judgedRecords.length,
      examples: examples.length,
      concise,
    });

    // Run again: nothing to do.
    expect((await run(runDir(), "all")).alreadyFinished).toBe(true);
  }, 240_000);
});

describe("salmon-preferences, killed", () => {
  it("a kill -9 during the preferences, then resume, gives the records of an uninterrupted run", async () => {
    const whole = join(dir, "pipeline");
    // The uninterrupted run is the one above; this run starts from its responses (same settings, so the same).
    const expected = await readRecordsFile(join(whole, "salmon-preferences", "records.jsonl"), { sortById: true });
    expect(expected.length).toBeGreaterThanOrEqual(4);
    const killed = join(dir, "killed");
    await run(killed, "responses", policy);
    await killDuringPreferences(killed);
    const partial = await readRecordsFile(join(killed, "salmon-preferences", "records.jsonl"));
    expect(partial.length).toBeGreaterThan(0);
    expect(partial.length).toBeLessThan(expected.length);
    await run(killed, "preferences");
    expect(await readRecordsFile(join(killed, "salmon-preferences", "records.jsonl"), { sortById: true })).toEqual(
      expected,
    );
  });
});

/**
 * Open the run's HTML report in headless Chromium: the SALMON panels show the report data's figures, the reward
 * model's loss and held-out accuracy curves are drawn, and a judged pair and an aggregated example open in the record
 * browser with their scores.
 */
async function expectReportRenders(
  runDir: string,
  data: Awaited<ReturnType<typeof collectReportData>>,
  expected: { judged: number; examples: number; concise: { agree: number; pairs: number } },
): Promise<void> {
  if (!existsSync(chromiumPath))
    throw new Error(`Chromium not found at ${chromiumPath}: run 'apt-get install chromium' or set CHROMIUM_PATH`);
  const { path } = await writeReport({ runDir, out: join(runDir, "report.html") });
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(pathToFileURL(path).href);
    await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
    expect(errors).toEqual([]);
    const judgmentRows = (await page.evaluate(
      "Array.from(document.querySelectorAll('#salmon-judgments tbody tr'), (row) => row.dataset.principle)",
    )) as string[];
    expect(judgmentRows).toEqual(salmonTestPrinciples);
    const { agree, pairs } = expected.concise;
    expect(await page.textContent('#salmon-judgments tr[data-principle="concise"] td[data-field="agree"]')).toBe(
      `${agree} (${Math.round((100 * agree) / pairs)}%)`,
    );
    const labels = data.salmon.labels;
    expect(await page.textContent('#salmon-labels tr[data-field="examples"] td')).toBe(String(expected.examples));
    expect(await page.textContent('#salmon-labels tr[data-field="output 1 / output 2 preferred"] td')).toBe(
      `${labels.preference1} / ${labels.preference2}`,
    );
    // The charts: score histograms per principle; the reward model's training loss and held-out loss and accuracy.
    const datasets = (id: string) =>
      page.evaluate(
        `(Chart.getChart(document.getElementById(${JSON.stringify(id)}))?.data.datasets ?? []).map((d) => [d.label, d.data.length])`,
      ) as Promise<Array<[string, number]>>;
    expect((await datasets("salmon-scores-chart")).map(([label]) => label)).toEqual(salmonTestPrinciples);
    const loss = (await datasets("loss-chart")).filter(([label]) => label.includes("salmon-reward-model"));
    expect(loss).toHaveLength(1);
    expect(loss[0]![1]).toBeGreaterThan(0);
    const heldOut = (await datasets("held-out-chart")).filter(([label]) => label.includes("salmon-reward-model"));
    expect(heldOut.map(([label]) => label.split(": ").at(-1))).toEqual(["loss", "accuracy"]);
    for (const [, points] of heldOut) expect(points).toBeGreaterThanOrEqual(2);

    // The record browser: a judged pair with its s12 / s21 per principle, and an aggregated example.
    await page.selectOption("#filter-stage", "salmon-preferences");
    expect(await page.textContent("#result-count")).toBe(`${expected.judged} of ${data.records.length} records`);
    await page.click("#results li >> nth=0");
    await page.waitForSelector("#detail:not([hidden])");
    expect(await page.textContent('[data-testid="detail-thoughts"] h4')).toBe("judgments (s12, s21)");
    const judgments = (await page.textContent('[data-testid="detail-thoughts"] pre')) ?? "";
    expect(judgments.split("\n").map((line) => line.split(":")[0])).toEqual(salmonTestPrinciples);
    expect(judgments).toMatch(/^concise: s12 -?\d+\.\d{3}, s21 -?\d+\.\d{3} -> (output 1|output 2|orders disagree)$/m);
    expect(await page.textContent('[data-testid="detail-answer"] pre')).toMatch(/^Output 1:\n[\s\S]*\n\nOutput 2:\n/);
    await page.selectOption("#filter-stage", "salmon-aggregate");
    await page.selectOption("#filter-status", "kept");
    expect(await page.textContent("#result-count")).toBe(`${expected.examples} of ${data.records.length} records`);
    await page.click("#results li >> nth=0");
    expect(await page.textContent('[data-testid="detail-thoughts"] h4')).toBe("principles (* dominant) and scores");
    expect(await page.textContent('[data-testid="detail-thoughts"] pre')).toMatch(/^\* \w+( \(negated\))?: -?\d/m);
    expect(await page.textContent('[data-testid="detail-answer"] pre')).toMatch(/^Chosen:\n[\s\S]*\n\nRejected:\n/);
  } finally {
    await browser.close();
  }
}

/** Run the pipeline up to the preferences in a child process; kill -9 it once it has judged its first pair. */
async function killDuringPreferences(runDir: string): Promise<void> {
  const fixture = join(import.meta.dirname, "fixtures", "salmon-pipeline.ts");
  const records = join(runDir, "salmon-preferences", "records.jsonl");
  await killWhen(
    [fixture, policy, judgeModel, runDir, promptsFile, "preferences"],
    async () => (await fileSize(records)) > 0,
    { what: "the run" },
  );
}
