/** A real `kill -9` of a process appending records, then resume: the result equals an uninterrupted run. */
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { openRun, readJsonl, type StoreRecord } from "../src/run-store/index.js";
import { loopItems, loopOutputs } from "./fixtures/append-loop-items.js";
import { fileSize, killWhen } from "./fixtures/kill-when.js";

const fixture = join(import.meta.dirname, "fixtures", "append-loop.ts");

function expected() {
  const records: StoreRecord[] = [];
  const rejected: StoreRecord[] = [];
  for (const item of loopItems) {
    for (const output of loopOutputs(item)) {
      if ("kept" in output) records.push(output.kept);
      else rejected.push(output.rejected);
    }
  }
  return { records: sortById(records), rejected: sortById(rejected) };
}

const sortById = (records: StoreRecord[]) => [...records].sort((a, b) => a.id.localeCompare(b.id));

/** Start the appender and kill -9 it once records.jsonl has grown past `bytes`. */
async function killAfter(dir: string, bytes: number): Promise<void> {
  const records = join(dir, "loop", "records.jsonl");
  const start = await fileSize(records);
  await killWhen([fixture, dir], async () => (await fileSize(records)) >= start + bytes, { what: "the appender" });
}

it("a run killed with kill -9 twice, then resumed, holds exactly the records of an uninterrupted run", async () => {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-kill-"));
  await killAfter(dir, 20_000);
  await killAfter(dir, 150_000);
  const partial = await readJsonl(join(dir, "loop", "records.jsonl"));
  expect(partial.records.length).toBeGreaterThan(0);
  expect(partial.records.length).toBeLessThan(expected().records.length);
  // The lock of the killed process is stale and is taken over.
  const lockHolder = JSON.parse(await readFile(join(dir, ".lock"), "utf8")).pid;
  expect(lockHolder).not.toBe(process.pid);

  const run = await openRun(dir);
  const store = await run.stage("loop");
  const done = store.doneIds().size;
  const calls: string[] = [];
  const result = await store.processItems({
    items: loopItems,
    concurrency: 4,
    process: async (item) => {
      calls.push(item.id);
      return loopOutputs(item);
    },
  });
  await run.close();
  expect(result.skipped).toBeGreaterThan(0);
  expect(done).toBeGreaterThan(0);
  expect(new Set(calls).size).toBe(calls.length);

  const want = expected();
  const records = sortById((await readJsonl(join(dir, "loop", "records.jsonl"))).records);
  const rejected = sortById((await readJsonl(join(dir, "loop", "rejected.jsonl"))).records);
  expect(records.length).toBe(want.records.length);
  expect(records).toEqual(want.records);
  expect(rejected).toEqual(want.rejected);
  const manifest = JSON.parse(await readFile(join(dir, "loop", "manifest.json"), "utf8"));
  expect(manifest.counts).toEqual({
    kept: want.records.length,
    rejected: want.rejected.length,
    byFilter: { "min-length": want.rejected.length },
  });
});
