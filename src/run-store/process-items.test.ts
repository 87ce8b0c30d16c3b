import { appendFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AbortedError } from "../errors/index.js";
import { createProgressRenderer } from "../cli/progress-renderer.js";
import type { ProgressEvent } from "../progress/progress-event.js";
import { readJsonl, type StoreRecord } from "./jsonl.js";
import type { ItemResult } from "./process-items.js";
import { recordId } from "./record-id.js";
import { openRun } from "./run.js";
import { inShard } from "./shard.js";
import { stageFiles } from "./stage-store.js";

interface Item {
  id: string;
  n: number;
}

const items: Item[] = Array.from({ length: 24 }, (_, n) => ({ id: recordId("prompt", n), n }));

/** A deterministic stand-in for a stage: kept, rejected, two outputs, or none, depending on the input. */
function outputsOf(item: Item): ItemResult[] {
  const kind = item.n % 4;
  if (kind === 0) return [{ kept: { id: item.id, parentId: item.id, output: `answer ${item.n}` } }];
  if (kind === 1) return [{ rejected: { id: item.id, filter: "min-length", reason: `${item.n} chars, minimum 160` } }];
  if (kind === 2) {
    return [0, 1].map((sample) => ({ kept: { id: recordId("sample", item.id, sample), parentId: item.id, sample } }));
  }
  return item.n % 8 === 3 ? [] : [{ rejected: { id: recordId("r", item.id), filter: "dedup", reason: "near copy" } }];
}

/** `cancel`: behave like a backend that stops its request on abort (the input is then redone on resume). */
async function process(item: Item, calls: string[], signal?: AbortSignal, cancel = false): Promise<ItemResult[]> {
  calls.push(item.id);
  await new Promise((resolve) => setImmediate(resolve));
  if (cancel && signal?.aborted) throw new AbortedError();
  return outputsOf(item);
}

const sortById = (records: StoreRecord[]) => [...records].sort((a, b) => a.id.localeCompare(b.id));

async function readStage(dir: string) {
  const records = (await readJsonl(join(dir, "s", stageFiles.records))).records;
  const rejected = (await readJsonl(join(dir, "s", stageFiles.rejected))).records;
  return { records: sortById(records), rejected: sortById(rejected) };
}

async function uninterrupted() {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-base-"));
  const run = await openRun(dir, { create: true });
  const store = await run.stage("s");
  const calls: string[] = [];
  const result = await store.processItems({ items, concurrency: 3, process: (item) => process(item, calls) });
  await run.close();
  expect(result).toMatchObject({ total: 24, skipped: 0, processed: 24 });
  return { dir, calls, ...(await readStage(dir)) };
}

const torn = fc.record({
  file: fc.constantFrom(stageFiles.records, stageFiles.rejected, stageFiles.doneItems),
  fraction: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
  newline: fc.boolean(),
});

const interruption = fc.record({
  afterRecords: fc.integer({ min: 0, max: 12 }),
  concurrency: fc.integer({ min: 1, max: 4 }),
  torn: fc.option(torn, { nil: undefined }),
  staleManifest: fc.boolean(),
  cancelInFlight: fc.boolean(),
});

describe("processItems", () => {
  it("resumed after interruptions at random points (with torn lines) equals an uninterrupted run", async () => {
    const baseline = await uninterrupted();
    await fc.assert(
      fc.asyncProperty(fc.array(interruption, { minLength: 1, maxLength: 4 }), async (interruptions) => {
        const dir = await mkdtemp(join(tmpdir(), "selfalign-resume-"));
        const calls: string[] = [];
        for (const stop of interruptions) {
          const run = await openRun(dir, { create: true });
          const store = await run.stage("s");
          const manifestBefore = await readFile(store.manifestPath, "utf8").catch(() => undefined);
          const controller = new AbortController();
          let seen = 0;
          const onProgress = (event: ProgressEvent) => {
            if (event.type === "record-end" && ++seen >= stop.afterRecords) controller.abort();
          };
          if (stop.afterRecords === 0) controller.abort();
          const outcome = await store
            .processItems({
              items,
              concurrency: stop.concurrency,
              signal: controller.signal,
              onProgress,
              process: (item, signal) => process(item, calls, signal, stop.cancelInFlight),
            })
            .catch((error: unknown) => error);
          if (outcome instanceof Error) expect(outcome).toBeInstanceOf(AbortedError);
          await run.close();
          if (stop.staleManifest && manifestBefore) await writeFile(store.manifestPath, manifestBefore);
          if (stop.torn) {
            // What a write cut short by kill -9 would leave: the start of a record's line.
            const line = JSON.stringify({ id: recordId("torn", seen), parentId: "x", output: "partial text" });
            const cut = line.slice(0, Math.max(1, Math.floor(line.length * stop.torn.fraction)));
            await appendFile(join(dir, "s", stop.torn.file), stop.torn.newline ? `${cut}\n` : cut);
          }
        }
        const run = await openRun(dir);
        const store = await run.stage("s");
        const result = await store.processItems({ items, concurrency: 2, process: (item) => process(item, calls) });
        const counts = store.manifest.counts;
        await run.close();

        const final = await readStage(dir);
        expect(final.records).toEqual(baseline.records);
        expect(final.rejected).toEqual(baseline.rejected);
        expect(result.total).toBe(items.length);
        // Every input was processed; only inputs cancelled in flight at an interruption run twice.
        expect(new Set(calls)).toEqual(new Set(baseline.calls));
        const cancellable = interruptions.filter((stop) => stop.cancelInFlight);
        expect(calls.length - items.length).toBeLessThanOrEqual(
          cancellable.reduce((sum, stop) => sum + stop.concurrency, 0),
        );
        expect(counts).toEqual({
          kept: baseline.records.length,
          rejected: baseline.rejected.length,
          byFilter: { "min-length": 6, dedup: 3 },
        });
        const manifest = JSON.parse(await readFile(join(dir, "s", "manifest.json"), "utf8"));
        expect(manifest.counts).toEqual(counts);
        await rm(dir, { recursive: true });
      }),
      { numRuns: 20 },
    );
    await rm(baseline.dir, { recursive: true });
  });

  it("does not call process again for inputs finished before (no request is sent twice)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "selfalign-skip-"));
    const calls: string[] = [];
    let run = await openRun(dir, { create: true });
    await (await run.stage("s")).processItems({ items: items.slice(0, 10), process: (item) => process(item, calls) });
    await run.close();
    run = await openRun(dir);
    const events: ProgressEvent[] = [];
    const result = await (await run.stage("s")).processItems({
      items,
      onProgress: (event) => events.push(event),
      process: (item) => process(item, calls),
    });
    await run.close();
    expect(result).toMatchObject({ total: 24, skipped: 10, processed: 14 });
    expect(calls).toHaveLength(24);
    expect(new Set(calls).size).toBe(24);
    expect(events[0]).toEqual({ type: "stage-start", stage: "s", total: 24, done: 10 });
    expect(events.at(-1)).toMatchObject({ type: "stage-end", stage: "s", done: 24 });
    expect(events.filter((event) => event.type === "record-end")).toHaveLength(14);
  });

  it("keeps what finished and rethrows when processing an input fails", async () => {
    const dir = await mkdtemp(join(tmpdir(), "selfalign-fail-"));
    const run = await openRun(dir, { create: true });
    const store = await run.stage("s");
    const failing = store.processItems({
      items,
      concurrency: 2,
      process: async (item) => {
        if (item.n === 5) throw new Error("server down");
        return outputsOf(item);
      },
    });
    await expect(failing).rejects.toThrow("server down");
    const done = store.doneIds();
    await run.close();
    expect(done.has(items[0]!.id)).toBe(true);
    expect(done.has(items[5]!.id)).toBe(false);
    const manifest = JSON.parse(await readFile(join(dir, "s", "manifest.json"), "utf8"));
    expect(manifest.counts.kept + manifest.counts.rejected).toBeGreaterThan(0);
  });

  it("processes only its shard's inputs; the shards together equal the unsharded run", async () => {
    const baseline = await uninterrupted();
    const dir = await mkdtemp(join(tmpdir(), "selfalign-shards-"));
    const all: StoreRecord[] = [];
    for (let index = 0; index < 3; index++) {
      const shard = { index, count: 3 };
      const run = await openRun(dir, { create: true, shard });
      const store = await run.stage("s", { shard });
      const calls: string[] = [];
      const result = await store.processItems({ items, process: (item) => process(item, calls) });
      await run.close();
      expect(result.total).toBe(items.filter((item) => inShard(item.id, shard)).length);
      expect(calls.every((id) => inShard(id, shard))).toBe(true);
      all.push(...(await store.readRecords()));
    }
    expect(sortById(all)).toEqual(baseline.records);
  });
});

describe("processItems events", () => {
  it("processes an input listed twice once and reports kept/rejected per input", async () => {
    const dir = await mkdtemp(join(tmpdir(), "selfalign-events-"));
    const run = await openRun(dir, { create: true });
    const store = await run.stage("s");
    const events: ProgressEvent[] = [];
    const calls: string[] = [];
    const list = [items[0]!, items[1]!, items[0]!, items[3]!];
    const result = await store.processItems({
      items: list,
      onProgress: (event) => events.push(event),
      process: (item) => process(item, calls),
    });
    await run.close();
    expect(result).toMatchObject({ total: 3, processed: 3, kept: 1, rejected: 1 });
    expect(calls).toEqual([items[0]!.id, items[1]!.id, items[3]!.id]);
    expect(events.filter((event) => event.type === "record-end")).toEqual([
      { type: "record-end", stage: "s", done: 1, total: 3, kept: true, records: { kept: 1, rejected: 0 } },
      {
        type: "record-end",
        stage: "s",
        done: 2,
        total: 3,
        kept: false,
        reason: "min-length: 1 chars, minimum 160",
        records: { kept: 1, rejected: 1 },
      },
      { type: "record-end", stage: "s", done: 3, total: 3, records: { kept: 1, rejected: 1 } },
    ]);
  });

  it("progress shows the folder's record counts, as the summary does: several outputs, retries, a resume", async () => {
    const dir = await mkdtemp(join(tmpdir(), "selfalign-counts-"));
    // Each input gives 3 questions: some inputs all rejected, some mixed; one input's prompt overflows the context
    // (a retryable rejection, which a later run with a larger context replaces).
    const outputs = (item: Item, context: number): ItemResult[] => {
      if (item.n === 5 && context < 2048)
        return [
          {
            rejected: {
              id: recordId("overflow", item.id, context),
              filter: "context-overflow",
              reason: "too long",
              retryOf: item.id,
            },
          },
        ];
      return [0, 1, 2].map((k) =>
        (item.n + k) % 3 === 0
          ? { kept: { id: recordId("q", item.id, k), parentId: item.id } }
          : { rejected: { id: recordId("q", item.id, k), filter: "dedup", reason: "near copy" } },
      );
    };
    const runOnce = async (list: Item[], context: number) => {
      const run = await openRun(dir, { create: true });
      const store = await run.stage("s");
      const stream = {
        text: "",
        write(chunk: string) {
          stream.text += chunk;
        },
      };
      const renderer = createProgressRenderer({ stream, mode: "plain", color: false, logLevel: "info", now: () => 0 });
      await store.processItems({
        items: list,
        onProgress: renderer.onProgress,
        process: async (item) => outputs(item, context),
      });
      const counts = { ...store.manifest.counts };
      await run.close();
      return { text: stream.text, counts };
    };
    const first = await runOnce(items.slice(0, 8), 1024);
    const second = await runOnce(items.slice(0, 12), 4096);
    await rm(dir, { recursive: true, force: true });
    for (const { text, counts } of [first, second]) {
      const lines = text.trimEnd().split("\n");
      // The last progress line and the end line both give the manifest's counts (what `selfalign run` prints).
      expect(lines.at(-2)).toContain(`kept ${counts.kept} rejected ${counts.rejected}`);
      expect(lines.at(-1)).toContain(`kept ${counts.kept}, rejected ${counts.rejected}`);
    }
    // Records, not inputs: 8 inputs, 7 of them with 3 questions each, and the overflow; then 5 more inputs.
    expect(first.counts).toEqual({ kept: 7, rejected: 15, byFilter: { dedup: 14, "context-overflow": 1 } });
    expect(second.counts).toMatchObject({ kept: 12, rejected: 24 });
  });
});
