/** `selfalign status <run>` as a user runs it: the real CLI in a child process over a run written by the store. */
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { parse } from "yaml";
import { openRun } from "../src/run-store/index.js";

const cli = join(import.meta.dirname, "..", "src", "cli", "cli.ts");

async function status(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", cli, "status", ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

it("prints per-stage counts, rejections by filter, token usage, shards and the lock", async () => {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-status-"));
  const run = await openRun(dir, { create: true });
  await run.writeRunJson({ config: {}, constitutionHash: "c0ffee", backends: { generator: "llama-cpp:m.gguf" } });
  const prompts = await run.stage("self-instruct");
  for (let i = 0; i < 12; i++) await prompts.appendRecord({ id: `p${i}` });
  await prompts.appendRejected({ id: "r1", filter: "rouge-l", reason: "0.82 > 0.7" });
  await prompts.appendRejected({ id: "r2", filter: "rouge-l", reason: "0.75 > 0.7" });
  await prompts.appendRejected({ id: "r3", filter: "blacklist", reason: 'has "image"' });
  prompts.addUsage({ promptTokens: 12345, completionTokens: 678 });
  const answers = await run.stage("self-align", { shard: { index: 0, count: 2 } });
  await answers.appendRecord({ id: "a1" });
  await prompts.saveManifest();
  await answers.saveManifest();

  // While the run is open, its lock is held by this process.
  const busy = await status(dir);
  expect(busy.code).toBe(0);
  expect(busy.stdout).toContain(`lock         held by process ${process.pid}`);
  await run.close();

  const [done, asJson, missing] = await Promise.all([status(dir), status(dir, "--json"), status(join(dir, "nope"))]);
  expect(done.code).toBe(0);
  const lines = done.stdout.split("\n");
  expect(lines).toContain("  lock         free (no process is writing this run)");
  expect(lines).toContain("  constitution c0ffee");
  expect(lines.find((line) => line.startsWith("stage"))).toMatch(
    /^stage +kept +rejected +prompt tokens +completion tokens +updated +shards$/,
  );
  expect(lines.find((line) => line.startsWith("self-instruct "))).toMatch(
    /^self-instruct +12 +3 +12,345 +678 +\S+ \S+ +-$/,
  );
  expect(lines.find((line) => line.startsWith("self-align "))).toMatch(
    /^self-align +1 +0 +0 +0 +\S+ \S+ +1 of 2 \(missing 1\/2\)$/,
  );
  expect(lines).toContain("  self-instruct: rouge-l 2, blacklist 1");

  const json = JSON.parse(asJson.stdout);
  expect(json.stages.map((stage: { stage: string }) => stage.stage).sort()).toEqual(["self-align", "self-instruct"]);

  expect(missing.code).toBe(1);
  expect(missing.stderr).toBe(
    `selfalign: ${join(dir, "nope")}: run directory does not exist; give the folder a run writes to (e.g. runs/demo)\n`,
  );
});

it("shows a stale lock as free, on one line, and finds the run of a project folder that init made", async () => {
  const project = await mkdtemp(join(tmpdir(), "selfalign-status-init-"));
  const init = spawnSync(process.execPath, ["--import", "tsx", cli, "init", project], { encoding: "utf8" });
  expect(init.status).toBe(0);
  const config = parse(await readFile(join(project, "selfalign.yaml"), "utf8")) as { name: string; runDir?: string };
  expect(config.runDir).toBeUndefined();
  const runDir = resolve(project, "runs", config.name);
  const run = await openRun(runDir, { create: true });
  await (await run.stage("self-instruct")).appendRecord({ id: "p0" });
  await run.close();
  const deadPid = Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout);
  await writeFile(join(runDir, ".lock"), JSON.stringify({ pid: deadPid, hostname: hostname(), startedAt: "2020" }));

  for (const target of [project, join(project, "selfalign.yaml"), runDir]) {
    const shown = await status(target);
    expect(shown.code).toBe(0);
    const locks = shown.stdout.split("\n").filter((line) => line.startsWith("  lock "));
    expect(locks).toEqual([
      `  lock         free: stale ${join(runDir, ".lock")} left by a process that is gone (the next run takes it over)`,
    ]);
    expect(shown.stdout).toMatch(/^self-instruct +1 +0 /m);
  }
});
