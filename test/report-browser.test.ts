import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeReport } from "../src/report/index.js";
import { chromiumArgs, chromiumPath } from "./fixtures/chromium.js";
import { writeSampleRun } from "./fixtures/write-sample-run.js";

let dir: string;
let browser: Browser;
let reportUrl: string;

beforeAll(async () => {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium not found at ${chromiumPath}: run 'apt-get install chromium' (.ci/run does) or set CHROMIUM_PATH`,
    );
  }
  dir = await mkdtemp(join(tmpdir(), "selfalign-report-browser-"));
  await writeSampleRun(join(dir, "run"));
  const { path } = await writeReport({ runDir: join(dir, "run"), out: join(dir, "report.html") });
  reportUrl = pathToFileURL(path).href;
  browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
});

afterAll(async () => {
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("report in headless Chromium", () => {
  it("renders the panels with the run's numbers, filters records and opens one", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    const requests: string[] = [];
    page.on("request", (request) => requests.push(request.url()));
    await page.goto(reportUrl);
    await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
    expect(errors).toEqual([]);
    // Opens from disk with no network.
    expect(requests.filter((url) => !url.startsWith("file:") && !url.startsWith("data:"))).toEqual([]);

    const cell = (stage: string, field: string) =>
      page.textContent(`#funnel tr[data-stage="${stage}"] td[data-field="${field}"]`);
    expect(await cell("self-instruct", "generated")).toBe("12");
    expect(await cell("self-instruct", "kept")).toBe("10");
    expect(await cell("self-align", "rejected")).toBe("4");
    // Chart.js attached a chart to each canvas with data (5 panels; the loss chart has a curve here).
    const drawn = await page.evaluate(
      "Array.from(document.querySelectorAll('canvas')).filter((c) => Chart.getChart(c) !== undefined).length",
    );
    expect(drawn).toBe(5);
    expect(await page.$$eval("#principles tbody tr", (rows) => rows.length)).toBe(6);
    expect(await page.textContent('#red-team tr[data-type="legal expertise"] td[data-field="questions"]')).toBe("2");
    expect(await page.textContent("#result-count")).toBe("34 of 34 records");
    // Eval scores from <run>/eval/: rates with four decimals, counts as integers.
    const evalRows = await page.$$eval("#evaluation tbody tr", (rows) =>
      // Typed by hand: the check config has no DOM library.
      (rows as Array<{ querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }> }>).map((row) =>
        Array.from(row.querySelectorAll("td"), (cell) => cell.textContent),
      ),
    );
    expect(evalRows).toEqual([
      ["eval/hhh.json", "accuracy", "0.6250"],
      ["eval/hhh.json", "harmless", "0.5000"],
      ["eval/hhh.json", "n", "8"],
    ]);

    await page.selectOption("#filter-status", "rejected");
    expect(await page.textContent("#result-count")).toBe("6 of 34 records");
    await page.selectOption("#filter-reason", "min-length");
    expect(await page.textContent("#result-count")).toBe("4 of 34 records");
    await page.selectOption("#filter-reason", "");
    await page.selectOption("#filter-status", "");
    await page.selectOption("#filter-principle", "candor");
    const withCandor = await page.$$eval("#results li", (items) => items.length);
    expect(withCandor).toBeGreaterThan(0);
    await page.selectOption("#filter-principle", "");
    await page.fill("#search", "topic number 7");
    expect(await page.textContent("#result-count")).toBe("2 of 34 records"); // the prompt and its answer

    await page.click('#results li:has-text("self-align")');
    await page.waitForSelector("#detail:not([hidden])");
    expect(await page.textContent('[data-testid="detail-prompt"] pre')).toContain("topic number 7");
    expect(await page.textContent('[data-testid="detail-thoughts"]')).toContain("cites:");
    expect(await page.textContent('[data-testid="detail-answer"] pre')).toContain("thoughtful answer");

    await mkdir("test-artifacts", { recursive: true });
    await page.screenshot({ path: "test-artifacts/report.png", fullPage: true });
    await page.close();
  });
});
