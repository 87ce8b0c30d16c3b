import { appendFile, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { readJsonl } from "./jsonl.js";
import { openRun } from "./run.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-stage-"));
});

describe("StageStore", () => {
  it("appends records and rejections, skips stored ids, and keeps manifest counts equal to the files", async () => {
    const run = await openRun(dir, { create: true });
    const store = await run.stage("self-align");
    expect(await store.appendRecord({ id: "a", output: "x" })).toBe(true);
    expect(await store.appendRecord({ id: "a", output: "again" })).toBe(false);
    await store.appendRejected({ id: "b", filter: "min-length", reason: "answer has 4 chars, minimum 160" });
    await store.appendRejected({ id: "c", filter: "min-length", reason: "answer has 2 chars, minimum 160" });
    await store.appendRejected({ id: "d", filter: "blacklist", reason: 'contains "image"' });
    expect(await store.appendRejected({ id: "a", filter: "x", reason: "y" })).toBe(false);
    store.addUsage({ promptTokens: 100, completionTokens: 20, evaluatedPromptTokens: 30 });
    store.addUsage({ promptTokens: 10, completionTokens: 2 });
    store.manifest.extra.principleUsage = { "1": 3 };
    expect(store.doneIds()).toEqual(new Set(["a", "b", "c", "d"]));
    await run.close();

    const manifest = JSON.parse(await readFile(join(dir, "self-align", "manifest.json"), "utf8"));
    expect(manifest).toMatchObject({
      stage: "self-align",
      counts: { kept: 1, rejected: 3, byFilter: { "min-length": 2, blacklist: 1 } },
      usage: { promptTokens: 110, completionTokens: 22, evaluatedPromptTokens: 40 },
      extra: { principleUsage: { "1": 3 } },
    });
    expect((await readJsonl(join(dir, "self-align", "records.jsonl"))).records).toEqual([{ id: "a", output: "x" }]);
    expect((await readJsonl(join(dir, "self-align", "rejected.jsonl"))).records).toHaveLength(3);
  });

  it("keeps usage in a ledger written with each request, so a manifest never saved still shows it", async () => {
    const run = await openRun(dir, { create: true });
    const store = await run.stage("paid");
    store.addUsage({ promptTokens: 50, completionTokens: 5, retries: 2 }, "request-1");
    store.addUsage({ promptTokens: 7, completionTokens: 3, evaluatedPromptTokens: 1 }, "request-2");
    // No close, no saveManifest: as after kill -9.
    const ledger = (await readJsonl(join(dir, "paid", "usage.jsonl"))).records;
    expect(ledger).toEqual([
      { id: "request-1", promptTokens: 50, completionTokens: 5, evaluatedPromptTokens: 50, retries: 2 },
      { id: "request-2", promptTokens: 7, completionTokens: 3, evaluatedPromptTokens: 1 },
    ]);
    const other = await mkdtemp(join(tmpdir(), "selfalign-stage-copy-"));
    await writeFile(join(other, "usage.jsonl"), await readFile(join(dir, "paid", "usage.jsonl")));
    const { readStageFolder } = await import("./stage-store.js");
    const reopened = await readStageFolder(other, "paid");
    expect(reopened.manifest.usage).toEqual({
      promptTokens: 57,
      completionTokens: 8,
      evaluatedPromptTokens: 51,
      retries: 2,
    });
    await run.close();
  });

  it("a rejection that leaves its input unfinished (retryOf) stops counting once the input is done", async () => {
    const run = await openRun(dir, { create: true });
    const store = await run.stage("retry");
    await store.appendRejected({ id: "overflow-1", filter: "context-overflow", reason: "too long", retryOf: "in-1" });
    expect(store.isDone("in-1")).toBe(false);
    expect(store.manifest.counts).toMatchObject({ rejected: 1, byFilter: { "context-overflow": 1 } });
    await store.markDone("in-1");
    await run.close();
    const again = await openRun(dir);
    const reopened = await again.stage("retry");
    expect(reopened.manifest.counts).toEqual({ kept: 0, rejected: 0, byFilter: {} });
    expect(reopened.isDone("overflow-1")).toBe(true);
    await again.close();
  });

  it("recomputes counts from the files on open and drops a torn last line with a warning", async () => {
    let run = await openRun(dir, { create: true });
    let store = await run.stage("red-team");
    await store.appendRecord({ id: "a" });
    await run.close();
    // Files are the truth: a line appended behind the store's back and a stale manifest.
    await appendFile(join(dir, "red-team", "records.jsonl"), '{"id":"b"}\n{"id":"c","te');
    const manifestPath = join(dir, "red-team", "manifest.json");
    const stale = JSON.parse(await readFile(manifestPath, "utf8"));
    stale.counts.kept = 99;
    await writeFile(manifestPath, JSON.stringify(stale));

    run = await openRun(dir);
    store = await run.stage("red-team");
    expect(store.manifest.counts.kept).toBe(2);
    expect(store.doneIds()).toEqual(new Set(["a", "b"]));
    expect(store.warnings).toEqual([expect.stringContaining("dropped a torn last line")]);
    expect(await readFile(join(dir, "red-team", "records.jsonl"), "utf8")).toBe('{"id":"a"}\n{"id":"b"}\n');
    await store.appendRecord({ id: "c" });
    expect((await store.readRecords()).map((record) => record.id)).toEqual(["a", "b", "c"]);
    await run.close();
  });

  it("writes a shard into its own folder", async () => {
    const run = await openRun(dir, { create: true });
    const store = await run.stage("self-instruct", { shard: { index: 1, count: 3 } });
    await store.appendRecord({ id: "a" });
    await run.close();
    expect(await readFile(join(dir, "self-instruct", "shard-1-of-3", "records.jsonl"), "utf8")).toBe('{"id":"a"}\n');
    const manifest = JSON.parse(await readFile(join(dir, "self-instruct", "shard-1-of-3", "manifest.json"), "utf8"));
    expect(manifest.shard).toEqual({ index: 1, count: 3 });
  });

  it("rejects a stage name that cannot be a folder and a rejection without a filter", async () => {
    const run = await openRun(dir, { create: true });
    await expect(run.stage("../up")).rejects.toThrow(/stage name "..\/up" cannot be a folder name/);
    const store = await run.stage("s");
    await expect(store.appendRejected({ id: "x", filter: "", reason: "r" })).rejects.toThrow(
      /rejected record x needs a "filter" name and a "reason"/,
    );
    await run.close();
  });
});
