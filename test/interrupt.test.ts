/** Ctrl+C on a real process: the first stops cleanly (exit 130, resumable run), a second forces the exit. */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { stoppingNotice } from "../src/cli/interrupt.js";
import { openRun, readJsonl } from "../src/run-store/index.js";
import { loopItems, loopOutputs } from "./fixtures/append-loop-items.js";

const fixture = join(import.meta.dirname, "fixtures", "interruptible-loop.ts");

async function lines(path: string): Promise<number> {
  return (await readFile(path, "utf8").catch(() => "")).split("\n").length - 1;
}

/** Start the loop, wait until `minLines` records are written, then send SIGINT `signals` times. */
async function interrupt(dir: string, signals: number, minLines: number, mode = "") {
  const child = spawn(process.execPath, ["--import", "tsx", fixture, dir, mode], { stdio: "pipe" });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  while ((await lines(join(dir, "loop", "records.jsonl"))) < minLines) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  for (let i = 0; i < signals; i++) {
    child.kill("SIGINT");
    if (i + 1 < signals) {
      while (!stderr.includes(stoppingNotice)) await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  return { code: await exited, stderr };
}

it("the first Ctrl+C stops cleanly with exit 130 and the run resumes to the full result", async () => {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-sigint-"));
  const { code, stderr } = await interrupt(dir, 1, 10);
  expect(code).toBe(130);
  expect(stderr).toContain(stoppingNotice);
  expect(stderr).toMatch(/warning: loop: stopped after \d+ of 3000; run the same command again to resume/);
  expect(stderr).toContain("selfalign: Interrupted. What finished is saved; run the same command again to resume.");
  // Stopped cleanly: the lock is released and the manifest matches the files.
  await expect(stat(join(dir, ".lock"))).rejects.toThrow();
  const records = (await readJsonl(join(dir, "loop", "records.jsonl"))).records;
  const manifest = JSON.parse(await readFile(join(dir, "loop", "manifest.json"), "utf8"));
  expect(manifest.counts.kept).toBe(records.length);

  const run = await openRun(dir);
  const store = await run.stage("loop");
  const result = await store.processItems({ items: loopItems, process: async (item) => loopOutputs(item) });
  await run.close();
  expect(result.skipped).toBeGreaterThan(0);
  const expectedKept = loopItems.flatMap((item) => loopOutputs(item).filter((output) => "kept" in output)).length;
  const final = (await readJsonl(join(dir, "loop", "records.jsonl"))).records;
  expect(final).toHaveLength(expectedKept);
  expect(new Set(final.map((record) => record.id)).size).toBe(expectedKept);
});

it("a second Ctrl+C exits 130 at once even when work in flight ignores the first", async () => {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-sigint2-"));
  // Items 1-4 are kept; once their 4 lines are written, both workers hang on items 5 and 6.
  const { code, stderr } = await interrupt(dir, 2, 4, "hang");
  expect(code, stderr).toBe(130);
  expect(stderr).toContain("stopped without waiting; the records written so far are kept");
});
