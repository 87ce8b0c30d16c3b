/**
 * bench/report: the report of a 20,000-record run — file size and time until the page is interactive in headless
 * Chromium. Targets: under 15 MB, opens in under 3 s. Records carry realistic lengths of prose-like text.
 * Run: npx tsx bench/report.ts
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { seededRandom } from "../src/gguf/index.js";
import { writeReport } from "../src/report/index.js";
import { openRun, recordId } from "../src/run-store/index.js";
import { chromiumArgs, chromiumPath } from "../test/fixtures/chromium.js";

const total = Number(process.env.RECORDS ?? 20_000);
const random = seededRandom(42);
const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
const syllables = [
  "ka",
  "lo",
  "mi",
  "ren",
  "sto",
  "qua",
  "ti",
  "ber",
  "an",
  "ex",
  "pol",
  "dru",
  "ve",
  "sin",
  "or",
  "ly",
];
const vocabulary = Array.from({ length: 6000 }, () =>
  Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(syllables)).join(""),
);
const common = ["the", "a", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "on", "be"];
const words = (n: number) =>
  Array.from({ length: n }, () => (random() < 0.4 ? pick(common) : pick(vocabulary))).join(" ") + ".";
const verbs = [
  "Write",
  "Explain",
  "Summarize",
  "Classify",
  "List",
  "Describe",
  "Generate",
  "Compare",
  "Suggest",
  "Rewrite",
];
const principles = [
  "ethical",
  "informative",
  "helpful",
  "question-assessment",
  "reasoning",
  "multi-aspect",
  "candor",
  "static",
];

const dir = await mkdtemp(join(tmpdir(), "selfalign-bench-report-"));
try {
  const run = await openRun(join(dir, "run"), { create: true });
  await run.writeRunJson({ config: { bench: true } });
  const prompts = await run.stage("self-instruct");
  const answers = await run.stage("self-align");
  const half = Math.floor(total / 2);
  for (let i = 0; i < half; i++) {
    const id = recordId("p", i);
    const instruction = `${pick(verbs)} ${words(8 + Math.floor(random() * 16))}`;
    const input = random() < 0.3 ? words(20 + Math.floor(random() * 40)) : "";
    if (i % 7 === 0)
      await prompts.appendRejected({ id, instruction, input, filter: "rouge-dedup", reason: "ROUGE-L 0.74 > 0.7" });
    else await prompts.appendRecord({ id, instruction, input });
    const cited = [pick(principles), pick(principles)];
    const answer = {
      id: recordId("a", i),
      parentId: id,
      instruction,
      input,
      thoughts: `I am a helpful, ethical and reliable assistant. ${words(15 + Math.floor(random() * 15))} I should follow rules ${cited.join(", ")}.`,
      citedPrinciples: cited,
      output: words(60 + Math.floor(random() * 140)),
    };
    if (i % 5 === 0) await answers.appendRejected({ ...answer, filter: "min-length", reason: "too short" });
    else await answers.appendRecord(answer);
  }
  await prompts.saveManifest();
  await answers.saveManifest();
  await run.close();

  const started = performance.now();
  const report = await writeReport({ runDir: join(dir, "run"), out: join(dir, "report.html") });
  const buildSeconds = (performance.now() - started) / 1000;

  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  const loads: number[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const page = await browser.newPage();
    const t0 = performance.now();
    await page.goto(pathToFileURL(report.path).href);
    await page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
    loads.push((performance.now() - t0) / 1000);
    await page.close();
  }
  await browser.close();
  const median = [...loads].sort((a, b) => a - b)[1]!;
  const mb = report.bytes / 1e6;
  console.log(`bench/report: ${report.records} records`);
  console.log(
    `  file size      ${mb.toFixed(2)} MB   (target < 15 MB: ${mb < 15 ? "met" : "NOT met"}; ${(15 / mb).toFixed(2)}x headroom)`,
  );
  console.log(`  build time     ${buildSeconds.toFixed(2)} s`);
  console.log(
    `  open to ready  ${loads.map((s) => s.toFixed(2)).join(" / ")} s, median ${median.toFixed(2)} s   (target < 3 s: ${median < 3 ? "met" : "NOT met"}; ${(3 / median).toFixed(2)}x headroom)`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
