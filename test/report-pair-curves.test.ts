/**
 * The report's pair-objective panel in headless Chromium: the chosen-minus-rejected margin and the accuracy of DPO
 * and of the reward model, per training step (loss.jsonl) and on the held-out pairs (eval.jsonl), drawn from the
 * files the trainer writes; a run without pair objectives shows the panel empty.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectReportData, writeReport } from "../src/report/index.js";
import { chromiumArgs, chromiumPath } from "./fixtures/chromium.js";
import { writeSampleRun } from "./fixtures/write-sample-run.js";

let dir: string;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium not found at ${chromiumPath}: run 'apt-get install chromium' (.ci/run does) or set CHROMIUM_PATH`,
    );
  }
  dir = await mkdtemp(join(tmpdir(), "selfalign-report-pairs-"));
  browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
});

afterAll(async () => {
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Lines as the trainer writes them (LossPoint / EvalPoint). */
const lines = (rows: object[]) => `${rows.map((row) => JSON.stringify(row)).join("\n")}\n`;
const trainRows = (scale: number) =>
  [1, 2, 3, 4].map((step) => ({
    step,
    loss: 0.69 / step,
    learningRate: 1e-3,
    tokens: 100,
    gradientNorm: 0.5,
    accuracy: step / 4,
    margin: scale * step,
  }));
const evalRows = (scale: number) =>
  [0, 2, 4].map((step) => ({
    step,
    loss: 0.69 - step / 10,
    examples: 8,
    accuracy: 0.5 + step / 10,
    margin: scale * step,
  }));

async function open(runDir: string) {
  const { path } = await writeReport({ runDir, out: join(runDir, "report.html") });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(pathToFileURL(path).href);
  await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
  expect(errors).toEqual([]);
  return page;
}

describe("pair-objective curves in the report", () => {
  it("draws margin and accuracy per step and held-out for DPO and the reward model; empty without them", async () => {
    const runDir = join(dir, "run");
    await writeSampleRun(runDir);
    // The sample run trained SFT only: no margins, the panel is empty.
    const before = await open(runDir);
    expect(await before.getAttribute("#pair-training", "class")).toContain("empty");
    await before.close();

    const dpo = join(runDir, "salmon-dpo", "adapter");
    const reward = join(runDir, "salmon-reward-model", "reward-model");
    for (const folder of [dpo, reward]) await mkdir(folder, { recursive: true });
    await writeFile(join(dpo, "loss.jsonl"), lines(trainRows(0.5)));
    await writeFile(join(dpo, "eval.jsonl"), lines(evalRows(0.25)));
    await writeFile(join(reward, "loss.jsonl"), lines(trainRows(2)));
    await writeFile(join(reward, "eval.jsonl"), lines(evalRows(1)));

    // The data keeps each point's margin and accuracy (the SFT curve has neither).
    const data = await collectReportData(runDir);
    const dpoTrain = data.lossCurves.find((curve) => curve.name === join("salmon-dpo", "adapter", "loss.jsonl"))!;
    expect(dpoTrain.points).toEqual(
      trainRows(0.5).map(({ step, loss, accuracy, margin }) => ({ step, loss, accuracy, margin })),
    );
    const dpoEval = data.evalCurves.find((curve) => curve.name === join("salmon-dpo", "adapter", "eval.jsonl"))!;
    expect(dpoEval.points).toEqual(
      evalRows(0.25).map(({ step, loss, accuracy, margin }) => ({ step, loss, accuracy, margin })),
    );
    expect(data.lossCurves.find((curve) => curve.name.startsWith("engrave"))!.points[0]).toEqual({ step: 1, loss: 3 });

    const page = await open(runDir);
    expect(await page.getAttribute("#pair-training", "class")).not.toContain("empty");
    const datasets = (await page.evaluate(
      "Chart.getChart(document.getElementById('pair-training-chart')).data.datasets.map((d) => ({ label: d.label, axis: d.yAxisID, data: d.data }))",
    )) as Array<{ label: string; axis: string; data: Array<{ x: number; y: number }> }>;
    const byLabel = Object.fromEntries(datasets.map((d) => [d.label, d]));
    expect(Object.keys(byLabel).sort()).toEqual(
      [
        "salmon-dpo/adapter: margin",
        "salmon-dpo/adapter: accuracy",
        "salmon-dpo/adapter (held-out): margin",
        "salmon-dpo/adapter (held-out): accuracy",
        "salmon-reward-model/reward-model: margin",
        "salmon-reward-model/reward-model: accuracy",
        "salmon-reward-model/reward-model (held-out): margin",
        "salmon-reward-model/reward-model (held-out): accuracy",
      ].sort(),
    );
    expect(byLabel["salmon-dpo/adapter: margin"]!.data).toEqual(
      trainRows(0.5).map((r) => ({ x: r.step, y: r.margin })),
    );
    expect(byLabel["salmon-dpo/adapter (held-out): accuracy"]).toMatchObject({
      axis: "accuracy",
      data: evalRows(0.25).map((r) => ({ x: r.step, y: r.accuracy })),
    });
    expect(byLabel["salmon-reward-model/reward-model (held-out): margin"]!.data).toEqual(
      evalRows(1).map((r) => ({ x: r.step, y: r.margin })),
    );
    await page.close();
  });
});
