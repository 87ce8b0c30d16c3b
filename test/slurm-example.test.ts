/**
 * examples/slurm: submit.sh submits a job array and a merge job that depends on it (checked with a stand-in
 * `sbatch` that records its arguments), and the array task and merge scripts themselves run a sharded stage and
 * join it, here on a tiny GGUF with Slurm's array variables set by hand.
 */
import { spawnSync } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { writeTinyModel } from "../src/gguf/index.js";

let dir: string;
let model: string;
const examples = join(import.meta.dirname, "..", "examples", "slurm");
const selfalign = `${process.execPath} --import tsx ${join(import.meta.dirname, "..", "src", "cli", "cli.ts")}`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-slurm-"));
  model = join(dir, "tiny.gguf");
  await writeTinyModel(model, { seed: 3, contextLength: 4096 });
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const bash = (script: string, env: Record<string, string>) =>
  spawnSync("bash", [join(examples, script)], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, CI: "1", ...env },
  });

it("submit.sh submits the shards as an array and the merge after them", async () => {
  const bin = join(dir, "bin");
  const log = join(dir, "sbatch.log");
  await writeFile(join(dir, "next-id"), "1000");
  await spawnSync("mkdir", ["-p", bin]);
  await writeFile(
    join(bin, "sbatch"),
    `#!/usr/bin/env bash\nid=$(( $(cat ${dir}/next-id) + 1 )); echo $id > ${dir}/next-id\necho "$*" >> ${log}\necho "$id;cluster"\n`,
  );
  await chmod(join(bin, "sbatch"), 0o755);
  const result = bash("submit.sh", {
    PATH: `${bin}:${process.env.PATH}`,
    STAGE: "self-align",
    RUN_DIR: "/shared/runs/x",
    SHARDS: "4",
    SBATCH_OPTIONS: "--partition cpu",
  });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  const calls = (await readFile(log, "utf8")).trim().split("\n");
  expect(calls).toHaveLength(2);
  expect(calls[0]).toMatch(/^--parsable --partition cpu --array=0-3 --export=ALL .*shard\.sbatch$/);
  expect(calls[1]).toMatch(/^--parsable --partition cpu --dependency=afterok:1001 --export=ALL .*merge\.sbatch$/);
  expect(result.stdout).toContain("shards job 1001 (4 tasks), merge job 1002 after them");
});

it("an array task refuses to run outside an array, and the tasks then the merge job run a sharded stage", () => {
  const runDir = join(dir, "run");
  const env = {
    STAGE: "self-instruct",
    RUN_DIR: runDir,
    MODEL: `llama-cpp:${model}`,
    SHARDS: "2",
    SELFALIGN: selfalign,
    STAGE_FLAGS: "--target 2 --max-tokens 16 --max-rounds-without-progress 1 --batch-size 1",
  };
  const outside = bash("shard.sbatch", env);
  expect(outside.status).not.toBe(0);
  expect(outside.stderr).toMatch(/run this as a Slurm job array/);
  for (const task of ["0", "1"]) {
    const result = bash("shard.sbatch", { ...env, SLURM_ARRAY_TASK_ID: task });
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^self-instruct: kept \d+, rejected \d+ after \d+ rounds/);
  }
  const merged = bash("merge.sbatch", env);
  expect(merged.status).toBe(0);
  expect(merged.stdout).toMatch(/^self-instruct: merged 2 shards, \d+ records, kept \d+, dropped \d+\n$/);
});
