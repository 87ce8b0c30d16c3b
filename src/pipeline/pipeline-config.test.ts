import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { starterConfig } from "../cli/commands/init.js";
import { ConfigError } from "../errors/index.js";
import { writeTinyModel } from "../gguf/index.js";
import { loadPipelineConfig, parsePipelineConfig, runDirOf } from "./pipeline-config.js";
import { runPipeline } from "./run-pipeline.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-config-"));
  await writeTinyModel(join(dir, "m.gguf"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe("pipeline config", () => {
  it("accepts the starter config written by 'selfalign init' and fills defaults", () => {
    const config = parsePipelineConfig(parse(starterConfig("demo-project")), "selfalign.yaml");
    expect(config.name).toBe("demo-project");
    expect(config.stages["self-instruct"]?.target).toBe(300);
    expect((config.stages.engrave?.train as { trainer: string }).trainer).toBe("embedded");
    expect(config.stages["self-align"]?.skip).toBe(false);
    expect(config.report).toBe(true);
  });

  it("names file, line and field of an unknown stage option, and lists the allowed ones", async () => {
    const path = await configFile(
      "unknown.yaml",
      "name: x\nmodel: ./m.gguf\nstages:\n  self-instruct:\n    targte: 10\n",
    );
    const error = await loadPipelineConfig(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(
      /unknown\.yaml, line 5, stages\.self-instruct\.targte: unknown field "targte"; allowed fields: .*target/,
    );
  });

  it("reports a missing model, bad values and YAML syntax with their lines", async () => {
    await expect(loadPipelineConfig(await configFile("no-model.yaml", "name: x\n"))).rejects.toThrow(
      /missing required field "model"/,
    );
    await expect(
      loadPipelineConfig(await configFile("bad-value.yaml", "name: x\nmodel: m.gguf\nseed: many\n")),
    ).rejects.toThrow(/line 3, seed/);
    await expect(loadPipelineConfig(await configFile("syntax.yaml", "name: x\nmodel: [unclosed\n"))).rejects.toThrow(
      /syntax\.yaml, line \d/,
    );
    await expect(loadPipelineConfig(join(dir, "absent.yaml"))).rejects.toThrow(/config file not found/);
  });

  it("fails before any work when the model file is missing or the constitution is invalid", async () => {
    const missing = await loadPipelineConfig(
      await configFile("missing-model.yaml", "name: missing\nmodel: ./nope.gguf\n"),
    );
    await expect(runPipeline({ loaded: missing })).rejects.toThrow(
      /missing-model\.yaml, line 2, model: .*nope\.gguf does not exist: expected a GGUF model file/,
    );
    await expect(stat(runDirOf(missing))).rejects.toThrow(); // no run directory was created

    const constitution = join(dir, "bad-constitution");
    await mkdir(constitution);
    await writeFile(join(constitution, "principles.yaml"), "principles: []\n");
    const bad = await loadPipelineConfig(
      await configFile("bad-constitution.yaml", "name: badc\nmodel: ./m.gguf\nconstitution: ./bad-constitution\n"),
    );
    await expect(runPipeline({ loaded: bad })).rejects.toThrow(/principles\.yaml/);
    await expect(stat(runDirOf(bad))).rejects.toThrow();
  });

  it("needs a GGUF to train on when the model is a server", async () => {
    const server = await loadPipelineConfig(
      await configFile("server.yaml", "name: srv\nmodel: openai:http://127.0.0.1:9/v1#base\n"),
    );
    await expect(runPipeline({ loaded: server })).rejects.toThrow(/set `trainBase`/);
  });
});
