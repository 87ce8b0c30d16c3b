import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "../errors/index.js";
import { type OpenRunOptions, openRun, type Run } from "./run.js";

let dir: string;
const opened: Run[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-run-"));
});
afterEach(async () => {
  for (const run of opened.splice(0)) await run.close();
});

async function open(path = dir, options: OpenRunOptions = { create: true }) {
  const run = await openRun(path, options);
  opened.push(run);
  return run;
}

/** A pid that surely belongs to no running process: one that just exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(child.stdout);
}

describe("openRun", () => {
  it("fails clearly when the directory is missing and create is off", async () => {
    await expect(openRun(join(dir, "nope"))).rejects.toThrow(/nope: run directory does not exist; check the path/);
  });

  it("writes a lock with pid and hostname and removes it on close", async () => {
    const run = await openRun(join(dir, "new"), { create: true });
    const lock = JSON.parse(await readFile(join(dir, "new", ".lock"), "utf8"));
    expect(lock).toMatchObject({ pid: process.pid, hostname: hostname() });
    await run.close();
    expect(await readdir(join(dir, "new"))).toEqual([]);
  });

  it("refuses a second open while the lock is held, naming the holder, and allows it after close", async () => {
    const first = await openRun(dir, { create: true });
    const error = await openRun(dir).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(`is in use by process ${process.pid} on ${hostname()}`);
    expect((error as Error).message).toContain("two processes cannot write one run");
    await first.close();
    await open();
  });

  it("takes over a stale lock left by a dead process", async () => {
    const pid = deadPid();
    await writeFile(join(dir, ".lock"), JSON.stringify({ pid, hostname: hostname(), startedAt: "2020-01-01" }));
    await open();
    const lock = JSON.parse(await readFile(join(dir, ".lock"), "utf8"));
    expect(lock.pid).toBe(process.pid);
    expect(lock.pid).not.toBe(pid);
  });

  it("does not take over a lock from another host, and says how to clear it", async () => {
    await writeFile(join(dir, ".lock"), JSON.stringify({ pid: 1, hostname: "elsewhere", startedAt: "2020-01-01" }));
    await expect(openRun(dir)).rejects.toThrow(
      /in use by process 1 on elsewhere.*If that process is no longer running, delete .*\.lock/,
    );
  });

  it("locks shards separately, so shards of one run can be written at once", async () => {
    await open(dir, { create: true, shard: { index: 0, count: 2 } });
    await open(dir, { create: true, shard: { index: 1, count: 2 } });
    await expect(openRun(dir, { shard: { index: 1, count: 2 } })).rejects.toThrow(/is in use by process/);
  });

  it("writes and reads run.json, keeping createdAt", async () => {
    const run = await open();
    await run.writeRunJson({ config: { seed: 1 }, constitutionHash: "abc", backends: { generator: "fake:1" } });
    const first = await run.readRunJson();
    await run.writeRunJson({ config: { seed: 2 }, constitutionHash: "abc" });
    const second = await run.readRunJson();
    expect(second).toMatchObject({ config: { seed: 2 }, constitutionHash: "abc", createdAt: first?.createdAt });
    expect(second?.versions?.node).toBe(process.version);
  });
});

describe("Run.stage", () => {
  it("refuses to write a shard other than the one this process locked", async () => {
    const run = await open(dir, { create: true, shard: { index: 0, count: 2 } });
    expect(run.shard).toEqual({ index: 0, count: 2 });
    await run.stage("s", { shard: { index: 0, count: 2 } });
    await expect(run.stage("s", { shard: { index: 1, count: 2 } })).rejects.toThrow(
      /this process locked shard 0\/2 of the run, so it cannot write shard 1\/2/,
    );
  });

  it("returns the same store for the same stage, so ids are never written twice", async () => {
    const run = await open();
    const a = await run.stage("s");
    expect(await a.appendRecord({ id: "x" })).toBe(true);
    const b = await run.stage("s");
    expect(b).toBe(a);
    expect(await b.appendRecord({ id: "x" })).toBe(false);
  });
});
