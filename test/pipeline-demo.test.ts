/**
 * The whole pipeline end to end on a tiny random-weight GGUF (the `selfalign demo` config): every stage runs through
 * the real embedded engine and trainer, both adapters are written, the final adapter lowers the loss of its training
 * set in node-llama-cpp, and a run interrupted at a random point in each stage, then resumed, ends with exactly the
 * records and adapter of an uninterrupted run.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { afterAll, describe, expect, it } from "vitest";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { seededRandom } from "../src/gguf/index.js";
import { formatPipelineSummary } from "../src/cli/commands/run.js";
import { prepareDemo } from "../src/pipeline/demo.js";
import { collectReportData } from "../src/report/index.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
import { readJsonl } from "../src/run-store/index.js";

const root = join(process.cwd(), ".tmp", `pipeline-test-${process.pid}`);
afterAll(async () => {
  if (!process.env.KEEP_TEST_FILES) await rm(root, { recursive: true, force: true });
});

const stageFolders = [
  "self-instruct",
  "red-team-topics",
  "red-team",
  "self-align",
  "engrave",
  "verbose-clone",
  "verbose-clone-sft",
];

/** Records and rejections of every stage, sorted by id, with the run's own folder replaced so two runs compare. */
async function snapshot(runDir: string, folder: string) {
  const out: Record<string, unknown> = {};
  for (const stage of stageFolders) {
    for (const file of ["records.jsonl", "rejected.jsonl"]) {
      const { records } = await readJsonl(join(runDir, stage, file));
      const text = JSON.stringify(records.sort((a, b) => a.id.localeCompare(b.id)));
      out[`${stage}/${file}`] = JSON.parse(text.split(folder).join("<run>"));
    }
  }
  return out;
}

/** Bytes of the files a run appends to (records, rejections, finished inputs, the token ledger, loss curves). */
async function progressBytes(dir: string): Promise<number> {
  let sum = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!entry.isFile() || !entry.name.endsWith(".jsonl")) continue;
    const path = join(entry.parentPath, entry.name);
    if (path.includes("stale-checkpoints")) continue;
    sum += (await stat(path).catch(() => undefined))?.size ?? 0;
  }
  return sum;
}

/**
 * Run the demo in a child process; kill -9 it once the run's files have grown past `threshold` bytes (and by at
 * least a line since it started, so every kill follows progress). "finished" when it ended by itself.
 */
async function runChild(dir: string, threshold: number | undefined): Promise<"killed" | "finished"> {
  const fixture = join(import.meta.dirname, "fixtures", "demo-pipeline.ts");
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", fixture, dir], { stdio: "pipe" });
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  let code: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.on("exit", (exitCode) => {
      code = exitCode;
      resolve();
    }),
  );
  const start = await progressBytes(join(dir, "run"));
  while (code === undefined) {
    const now = await progressBytes(join(dir, "run"));
    if (threshold !== undefined && now > start && now >= threshold) {
      child.kill("SIGKILL");
      await exited;
      return "killed";
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await exited;
  expect(code, stderr).toBe(0);
  return "finished";
}

describe("selfalign demo pipeline", () => {
  // The deterministic engine (one sequence, exact kernels): this run is also the reference of the kill test below.
  it(
    "runs every stage, writes both adapters, and the final adapter lowers the loss on its verbose set",
    { timeout: 1_200_000 },
    async () => {
      const loaded = await prepareDemo({ dir: join(root, "a-deterministic"), deterministic: true });
      const result = await runPipeline({ loaded });
      expect(result.alreadyFinished).toBe(false);
      expect(result.stages.map((s) => [s.stage, s.status])).toEqual([
        ["self-instruct", "ran"],
        ["red-team", "ran"],
        ["self-align", "ran"],
        ["engrave", "ran"],
        ["verbose-clone", "ran"],
        // SALMON and I-SHEEP are skipped unless the config turns them on.
        ...[
          "salmon-responses",
          "salmon-preferences",
          "salmon-aggregate",
          "salmon-reward-model",
          "salmon-dpo",
          "salmon-rl",
          "isheep",
        ].map((stage) => [stage, "skipped"]),
      ]);
      // The grammars make every generation stage keep records, so every filter and training sees real ones.
      for (const stage of ["self-instruct", "red-team", "self-align", "verbose-clone"]) {
        expect(result.stages.find((s) => s.stage === stage)?.kept, stage).toBeGreaterThan(0);
      }
      expect(formatPipelineSummary(result)).not.toMatch(/kept no records/i);
      const report = await collectReportData(result.runDir);
      expect(Object.values(report.principleUsage.overall).reduce((sum, n) => sum + n, 0)).toBeGreaterThan(0);
      expect(report.redTeam.some((row) => row.topics.some((topic) => topic.questions > 0))).toBe(true);
      const engraveAdapter = result.adapters.engrave!;
      const finalAdapter = result.finalAdapter!;
      expect((await stat(engraveAdapter)).size).toBeGreaterThan(0);
      expect((await stat(finalAdapter)).size).toBeGreaterThan(0);
      expect((await stat(result.reportPath!)).size).toBeGreaterThan(0);

      // Both SFT sets are also a hub dataset: Parquet with the rows of the JSONL exports, and a card.
      for (const folder of ["engrave", "verbose-clone-sft"]) {
        const messages = (await readFile(join(result.runDir, folder, "messages.jsonl"), "utf8"))
          .trimEnd()
          .split("\n")
          .map((line) => JSON.parse(line));
        const file = await asyncBufferFromFile(join(result.runDir, folder, "messages.parquet"));
        expect(await parquetReadObjects({ file })).toEqual(messages);
        const card = await readFile(join(result.runDir, folder, "README.md"), "utf8");
        expect(card).toContain(`| messages | messages.parquet | ${messages.length} |`);
      }

      // The final adapter, loaded by node-llama-cpp, assigns its training set a higher likelihood than the base.
      const { records } = await readJsonl<{ id: string; prompt: string; completion: string }>(
        join(result.runDir, "verbose-clone-sft", "records.jsonl"),
      );
      expect(records.length).toBeGreaterThan(0);
      const modelPath = loaded.config.model as string;
      const meanLogprob = async (lora?: string) => {
        const backend = await createLlamaCppBackend({
          model: modelPath,
          contextSize: 16384,
          sequences: 1,
          ...(lora ? { lora: [{ path: lora }] } : {}),
        });
        try {
          let total = 0;
          let tokens = 0;
          for (const record of records) {
            const [score] = await backend.score(record.prompt, [record.completion]);
            total += score!.logprob;
            tokens += score!.tokens.length;
          }
          return total / tokens;
        } finally {
          await backend.close();
        }
      };
      const base = await meanLogprob();
      const tuned = await meanLogprob(finalAdapter);
      expect(tuned).toBeGreaterThan(base + 0.05);

      // Running the finished run again does nothing and says so.
      const again = await runPipeline({ loaded });
      expect(again.alreadyFinished).toBe(true);
      expect(again.stages.filter((s) => s.status !== "skipped").map((s) => [s.stage, s.status])).toEqual(
        ["self-instruct", "red-team", "self-align", "engrave", "verbose-clone"].map((stage) => [stage, "up-to-date"]),
      );

      // The chat format works with the result (an answer comes back through the engraved prompt).
      const chat = await createLlamaCppBackend({
        model: modelPath,
        contextSize: 4096,
        sequences: 1,
        lora: [{ path: finalAdapter }],
      });
      const [reply] = await completeAll(chat, [{ prompt: records[0]!.prompt, maxTokens: 8, temperature: 0 }]);
      await chat.close();
      expect(reply!.completions[0]!.tokenCount).toBeGreaterThan(0);
    },
  );

  it(
    "killed with kill -9 at ten or more random points and resumed, ends with the records and adapter of an uninterrupted run",
    { timeout: 2_400_000 },
    async () => {
      // llama.cpp's numbers depend on batching and cache history; the deterministic engine removes that, so the
      // comparison checks resume itself. Both runs use it.
      const a = join(root, "a-deterministic");
      // The run of the test above, or (run alone) a fresh one; a finished run is left as it is.
      await runPipeline({ loaded: await prepareDemo({ dir: a, deterministic: true }) });
      const total = await progressBytes(join(a, "run"));
      expect(total).toBeGreaterThan(0);
      // Kill points spread over the whole run: when the files the run appends to have grown past a random share.
      const random = seededRandom(Date.now() % 100_000);
      const thresholds = Array.from({ length: 12 }, () => Math.floor(random() * total * 0.95)).sort((x, y) => x - y);
      const b = join(root, "b");
      let kills = 0;
      for (let attempt = 0; attempt < 40; attempt++) {
        const next = thresholds[kills];
        const outcome = await runChild(b, next);
        if (outcome === "finished") break;
        kills++;
      }
      expect(kills).toBeGreaterThanOrEqual(10);
      expect(await snapshot(join(b, "run"), b)).toEqual(await snapshot(join(a, "run"), a));
      const finalA = await readFile(join(a, "run", "verbose-clone", "adapter", "adapter.gguf"));
      const finalB = await readFile(join(b, "run", "verbose-clone", "adapter", "adapter.gguf"));
      expect(finalB.equals(finalA)).toBe(true);
    },
  );
});
