/**
 * Models as config objects: a pipeline whose `model` is `{ spec: "openai:...#m", apiKeyEnv: KEY }` runs against
 * `selfalign serve --api-key-env KEY` (the CLI, in a child process), the key read from the environment variable the
 * config names, and the backend's context window is the one the server reports; without the key the server refuses
 * with a clear error before any record is written.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createBackend } from "../src/backends/registry.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";

const KEY_ENV = "SELFALIGN_TEST_SERVE_KEY";
let dir: string;
let child: ChildProcess;
let url: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-server-model-"));
  const model = join(dir, "tiny.gguf");
  await writeTinyModel(model, { seed: 4, contextLength: 4096 });
  process.env[KEY_ENV] = "a-long-test-secret";
  child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli/cli.ts", "serve", "--model", model, "--port", "0", "--ctx", "3072"].concat([
      "--api-key-env",
      KEY_ENV,
      "--model-name",
      "m",
      "--threads",
      "1",
    ]),
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env } },
  );
  let stdout = "";
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(stdout);
      if (match) resolve(match[1]!);
    });
    child.on("exit", (code) => reject(new Error(`serve exited early (${code}): ${stderr}`)));
  });
});

afterAll(async () => {
  child?.kill("SIGINT");
  delete process.env[KEY_ENV];
  if (dir) await rm(dir, { recursive: true, force: true });
});

const loaded = (model: unknown, name: string) => {
  const runDir = join(dir, name);
  return {
    config: parsePipelineConfig(
      {
        name,
        model,
        runDir,
        report: false,
        stages: {
          "self-instruct": { target: 1, maxRounds: 1, sampling: { maxTokens: 24 } },
          "red-team": { skip: true },
          "self-align": { skip: true },
          engrave: { skip: true },
          "verbose-clone": { skip: true },
        },
      },
      "server config",
    ),
    baseDir: dir,
  };
};

it("runs a pipeline whose model is an object with apiKeyEnv, with the server's context", async () => {
  const spec = `openai:${url}#m`;
  const result = await runPipeline({ loaded: loaded({ spec, apiKeyEnv: KEY_ENV, maxRetries: 1 }, "object-model") });
  expect(result.stages[0]).toMatchObject({ stage: "self-instruct", status: "ran" });
  expect(result.usage.completionTokens).toBeGreaterThan(0);
  const info = JSON.parse(await readFile(join(result.runDir, "run.json"), "utf8"));
  expect(info.backends.generator).toBe(`openai:${url}#m`);
  // The key is never written anywhere in the run.
  expect(JSON.stringify(info)).not.toContain(process.env[KEY_ENV]);

  const backend = await createBackend({ spec, apiKeyEnv: KEY_ENV });
  try {
    const served = (await (
      await fetch(`${url}/models`, { headers: { authorization: `Bearer ${process.env[KEY_ENV]}` } })
    ).json()) as { data: Array<{ max_model_len?: number }> };
    expect(served.data[0]?.max_model_len).toBe(3072);
    expect(backend.capabilities().maxContext).toBe(3072);
  } finally {
    await backend.close();
  }
});

it("without the key the server refuses, and the run says so before writing a record", async () => {
  const result = await runPipeline({ loaded: loaded({ spec: `openai:${url}#m`, maxRetries: 0 }, "no-key") }).catch(
    (error: unknown) => error as Error,
  );
  expect(result).toBeInstanceOf(Error);
  expect((result as Error).message).toMatch(/401/);
  const records = await readFile(join(dir, "no-key", "self-instruct", "records.jsonl"), "utf8").catch(() => "");
  expect(records).toBe("");
});
