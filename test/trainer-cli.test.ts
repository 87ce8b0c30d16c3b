import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { registerTrain } from "../src/cli/commands/train.js";
import { ConfigError } from "../src/errors/index.js";
import { writeTinyModel } from "../src/gguf/index.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-cli-"));
  await writeTinyModel(join(dir, "m.gguf"), { dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 1, contextLength: 256 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function program(): Command {
  const p = new Command().exitOverride();
  registerTrain(p);
  return p;
}

describe("selfalign train", () => {
  it("writes adapter.gguf, peft/, checkpoint/ and loss.jsonl", async () => {
    const data = join(dir, "sft.jsonl");
    // No trailing newline: input files written by hand often lack one.
    await writeFile(
      data,
      `${JSON.stringify({ prompt: "Hi\n", completion: "there" })}\n${JSON.stringify({ prompt: "A", completion: "B" })}`,
    );
    const lines: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      await program().parseAsync(
        [
          "train",
          "--base",
          join(dir, "m.gguf"),
          "--data",
          data,
          "--out",
          join(dir, "adapter"),
          "--rank",
          "4",
          "--max-steps",
          "2",
          "--kernel",
          "ts",
          "--targets",
          "q,v,gate",
          "--activation-checkpointing",
          "on",
        ],
        { from: "user" },
      );
    } finally {
      write.mockRestore();
    }
    const printed = lines.join("");
    expect(printed).toMatch(/step 2\/2 loss \d/);
    for (const file of [
      "adapter.gguf",
      "peft/adapter_model.safetensors",
      "peft/adapter_config.json",
      "checkpoint/state.json",
    ]) {
      expect((await stat(join(dir, "adapter", file))).size).toBeGreaterThan(0);
    }
    expect((await readFile(join(dir, "adapter", "loss.jsonl"), "utf8")).trim().split("\n")).toHaveLength(2);
    const config = JSON.parse(await readFile(join(dir, "adapter", "peft", "adapter_config.json"), "utf8"));
    expect(config.target_modules).toEqual(["q_proj", "v_proj", "gate_proj"]);
  });

  it("a bad data line is a ConfigError naming the file and line", async () => {
    const data = join(dir, "bad.jsonl");
    await writeFile(data, `${JSON.stringify({ prompt: "a", completion: "b" })}\n${JSON.stringify({ prompt: "a" })}\n`);
    const error = await program()
      .parseAsync(["train", "--base", join(dir, "m.gguf"), "--data", data, "--out", join(dir, "bad")], { from: "user" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/bad\.jsonl.*line 2/);
  });

  it("--kind reward trains a reward model from prompt/chosen/rejected JSONL; eval lines are printed", async () => {
    const data = join(dir, "pairs.jsonl");
    const pairs = [
      { prompt: "Q: a?\nA:", chosen: " yes", rejected: " no" },
      { prompt: "Q: b?\nA:", chosen: " yes!", rejected: " nope" },
      { prompt: "Q: c?\nA:", chosen: " yes.", rejected: " never" },
    ];
    await writeFile(data, pairs.map((p) => JSON.stringify(p)).join("\n"));
    const lines: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      await program().parseAsync(
        [
          "train",
          "--kind",
          "reward",
          "--base",
          join(dir, "m.gguf"),
          "--data",
          data,
          "--eval-data",
          data,
          "--out",
          join(dir, "rm"),
          "--rank",
          "2",
          "--max-steps",
          "2",
          "--kernel",
          "ts",
        ],
        { from: "user" },
      );
    } finally {
      write.mockRestore();
    }
    const printed = lines.join("");
    expect(printed).toMatch(/step 2\/2 loss \d\.\d+ accuracy \d\.\d+ margin -?\d/);
    expect(printed).toMatch(/eval at step 2\/2: loss \d\.\d+ accuracy \d\.\d+ margin/);
    for (const file of ["adapter.gguf", "reward-head.safetensors", "reward-model.json", "eval.jsonl"]) {
      expect((await stat(join(dir, "rm", file))).size).toBeGreaterThan(0);
    }
    const config = JSON.parse(await readFile(join(dir, "rm", "peft", "adapter_config.json"), "utf8"));
    expect(config.task_type).toBe("SEQ_CLS");
  });

  it("a bad pair line names the file and line; the hf trainer takes the reward kind", async () => {
    const data = join(dir, "bad-pairs.jsonl");
    await writeFile(
      data,
      `${JSON.stringify({ prompt: "a", chosen: "b", rejected: "c" })}\n${JSON.stringify({ prompt: "a", chosen: "b" })}\n`,
    );
    const run = (extra: string[]) =>
      program()
        .parseAsync(
          [
            "train",
            "--kind",
            "preference",
            "--base",
            join(dir, "m.gguf"),
            "--data",
            data,
            "--out",
            join(dir, "bad"),
            ...extra,
          ],
          {
            from: "user",
          },
        )
        .catch((e: unknown) => e);
    const error = await run([]);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/bad-pairs\.jsonl.*line 2/);
    const good = join(dir, "good-pairs.jsonl");
    await writeFile(good, `${JSON.stringify({ prompt: "a", chosen: "b", rejected: "c" })}\n`);
    const hf = await program()
      .parseAsync(
        [
          "train",
          "--kind",
          "reward",
          "--trainer",
          "hf",
          "--base",
          join(dir, "m.gguf"),
          "--data",
          good,
          "--out",
          join(dir, "hf"),
          "--python",
          join(dir, "no-such-python"),
        ],
        {
          from: "user",
        },
      )
      .catch((e: unknown) => e);
    // The hf trainer takes the reward kind (python/train_pairs.py): it gets as far as starting Python.
    expect((hf as Error).message).toBe(
      `hf trainer: cannot run "${join(dir, "no-such-python")}": not found. Install Python 3 with torch, transformers, peft and accelerate, or set the python option to its interpreter`,
    );
  });
});
