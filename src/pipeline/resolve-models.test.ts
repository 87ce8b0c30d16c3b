/**
 * A pipeline config whose model is not a usable GGUF fails before any work with one ConfigError that names the config
 * file, the line and the field, and says what is wrong with the file — for every cause, worded without doubled words
 * or periods. The same causes named by a `--model` flag say so with the flag.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLlamaCppBackend } from "../backends/llama-cpp/index.js";
import { ConfigError } from "../errors/index.js";
import { writeTinyModel } from "../gguf/index.js";
import { loadPipelineConfig, runDirOf } from "./pipeline-config.js";
import { preparePipeline } from "./run-pipeline.js";

let dir: string;
let whole: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-models-"));
  whole = join(dir, "whole.gguf");
  await writeTinyModel(whole, { seed: 2 });
  const bytes = await readFile(whole);
  await writeFile(join(dir, "truncated.gguf"), bytes.subarray(0, Math.floor(bytes.length / 2)));
  await writeFile(join(dir, "header-cut.gguf"), bytes.subarray(0, 40));
  await writeFile(join(dir, "notes.gguf"), "hello, not a model\n");
  await writeFile(join(dir, "empty.gguf"), "");
  await mkdir(join(dir, "folder.gguf"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const causes: Array<[string, string, RegExp]> = [
  ["missing", "absent.gguf", /absent\.gguf does not exist: expected a GGUF model file/],
  ["a directory", "folder.gguf", /folder\.gguf is a directory: expected a GGUF model file/],
  ["not a GGUF", "notes.gguf", /notes\.gguf starts with "hell" instead of the GGUF magic "GGUF"/],
  ["empty", "empty.gguf", /empty\.gguf starts with "" instead of the GGUF magic "GGUF"/],
  [
    "truncated in its tensors",
    "truncated.gguf",
    /truncated\.gguf is truncated \(its tensors end at byte \d+, the file has \d+ bytes; download it again\)/,
  ],
  ["truncated in its header", "header-cut.gguf", /header-cut\.gguf has a damaged or incomplete GGUF header/],
];

/** No word written twice in a row, no doubled period, no period before a colon. */
function expectCleanWording(message: string) {
  expect(message).not.toMatch(/\b(\w+)[\s,:]+\1\b/i);
  expect(message).not.toMatch(/\.\s*\./);
  expect(message).not.toMatch(/\.:/);
}

async function configWith(name: string, lines: string[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `${lines.join("\n")}\n`);
  return path;
}

describe("the model a config names", () => {
  for (const [cause, file, expected] of causes) {
    it(`${cause}: a ConfigError at the config's file, line and field, before any work`, async () => {
      const config = await configWith(`model-${file}.yaml`, [
        `name: run-${cause.replace(/\W+/g, "-")}`,
        "seed: 3",
        `model: ${file}`,
      ]);
      const loaded = await loadPipelineConfig(config);
      const error = await preparePipeline({ loaded }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      const { message, path, line, field } = error as ConfigError;
      expect({ path, line, field }).toEqual({ path: config, line: 3, field: "model" });
      expect(message.startsWith(`${config}, line 3, model: ${join(dir, file)} `)).toBe(true);
      expect(message).toMatch(expected);
      expect(message).toContain("set `model` to the path of a local .gguf (relative to the config file)");
      expectCleanWording(message);
      await expect(stat(runDirOf(loaded))).rejects.toThrow();
    });
  }

  it("trainBase is checked the same way, at its own line", async () => {
    const config = await configWith("train-base.yaml", ["name: tb", "model: whole.gguf", "trainBase: folder.gguf"]);
    const error = (await preparePipeline({ loaded: await loadPipelineConfig(config) }).catch((e) => e)) as ConfigError;
    expect(error).toBeInstanceOf(ConfigError);
    expect({ line: error.line, field: error.field }).toEqual({ line: 3, field: "trainBase" });
    expect(error.message).toContain(`line 3, trainBase: ${join(dir, "folder.gguf")} is a directory`);
    expect(error.message).toContain("set `trainBase` to the path");
    expectCleanWording(error.message);
  });

  it("an hf: model that cannot be downloaded names the field and suggests the demo", async () => {
    const previous = { offline: process.env.SELFALIGN_OFFLINE, cache: process.env.SELFALIGN_CACHE_DIR };
    process.env.SELFALIGN_OFFLINE = "1";
    process.env.SELFALIGN_CACHE_DIR = join(dir, "cache");
    try {
      const config = await configWith("remote.yaml", ["name: remote", "model: hf:owner/repo/base.gguf"]);
      const error = (await preparePipeline({ loaded: await loadPipelineConfig(config) }).catch((e) => e)) as Error;
      expect(error).toBeInstanceOf(ConfigError);
      expect(
        error.message.startsWith(`${config}, line 2, model: could not download model "hf:owner/repo/base.gguf"`),
      ).toBe(true);
      expect(error.message).toContain("Supply a local file instead (set `model` to its path)");
      expect(error.message).toContain("run 'selfalign demo'");
      expect(error.message).not.toContain("--model");
      expectCleanWording(error.message);
    } finally {
      for (const [key, value] of [
        ["SELFALIGN_OFFLINE", previous.offline],
        ["SELFALIGN_CACHE_DIR", previous.cache],
      ] as const)
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
    }
  });

  it("a whole GGUF passes", async () => {
    const config = await configWith("whole.yaml", ["name: whole", "model: whole.gguf"]);
    const prepared = await preparePipeline({ loaded: await loadPipelineConfig(config) });
    expect(prepared.generator).toMatchObject({ type: "llama-cpp", model: whole });
    expect(prepared.trainBase).toBe(whole);
  });
});

describe("the model a flag names", () => {
  for (const [cause, file, expected] of causes) {
    it(`${cause}: a ConfigError that starts with the file and names --model`, async () => {
      const error = (await createLlamaCppBackend({ model: join(dir, file) }).catch((e: unknown) => e)) as ConfigError;
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.path).toBe(join(dir, file));
      expect(error.message.startsWith(`${join(dir, file)} `)).toBe(true);
      expect(error.message).toMatch(expected);
      expect(error.message).toContain("pass an existing path (--model ./path/model.gguf)");
      expectCleanWording(error.message);
    });
  }
});

describe("a YAML alias bomb", () => {
  it("is a ConfigError naming the file, not an unexpected error", async () => {
    const lines = [
      "name: bomb",
      "model: whole.gguf",
      'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ];
    for (let i = 1; i <= 8; i++)
      lines.push(
        `a${i}: &a${i} [${Array(8)
          .fill(`*a${i - 1}`)
          .join(", ")}]`,
      );
    const config = await configWith("bomb.yaml", lines);
    const error = await loadPipelineConfig(config).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).path).toBe(config);
    expect((error as ConfigError).message).toMatch(
      new RegExp(
        `^${config.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: the aliases \\(\\*name\\) in this file expand past the limit`,
      ),
    );
    // A few aliases are fine.
    const modest = await configWith("aliases.yaml", [
      "name: a",
      "model: whole.gguf",
      "stages:",
      "  engrave: { train: &train { rank: 4, alpha: 8 } }",
      '  "verbose-clone": { train: *train }',
    ]);
    const { config: parsed } = await loadPipelineConfig(modest);
    expect(parsed.stages["verbose-clone"]?.train).toMatchObject({ rank: 4, alpha: 8 });
  });
});
