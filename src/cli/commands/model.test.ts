import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigError } from "../../errors/index.js";
import { GgufFile, ggmlTypes } from "../../gguf/index.js";
import { registerModel } from "./model.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "model-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  registerModel(program);
  const lines: string[] = [];
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    await program.parseAsync(["model", "tiny", ...args], { from: "user" });
  } finally {
    write.mockRestore();
  }
  return lines.join("");
}

describe("selfalign model tiny", () => {
  it("writes Q8_0 weights and a vocabulary of the size asked for, with tied embeddings", async () => {
    const out = join(dir, "q8.gguf");
    const printed = await run([
      "--out",
      out,
      "--dtype",
      "q8_0",
      "--vocab-size",
      "1000",
      "--dim",
      "64",
      "--ffn",
      "128",
      "--tied",
    ]);
    // 1000 x 64 embeddings + 2 layers of (2 norms, q, k, v, o at 64 x 64 / 64 x 32, 3 x 64 x 128) + the output norm.
    expect(printed).toContain(
      `${(1000 * 64 + 2 * (128 + 2 * 4096 + 2 * 2048 + 3 * 8192) + 64).toLocaleString("en-US")} parameters`,
    );
    const file = await GgufFile.open(out);
    try {
      expect(file.tensorInfo("blk.1.ffn_down.weight")?.type).toBe(ggmlTypes.Q8_0);
      expect(file.tensorInfo("token_embd.weight")?.dims).toEqual([64, 1000]);
      expect(file.tensorInfo("output.weight")).toBeUndefined();
      const tokens = file.metadata["tokenizer.ggml.tokens"];
      expect(tokens?.type === "array" ? tokens.value.length : 0).toBe(1000);
      expect(file.value("llama.vocab_size")).toBe(1000);
    } finally {
      await file.close();
    }
  });

  it("says which flag is wrong: a Q8_0 width that is not whole blocks, a vocabulary smaller than the byte one", async () => {
    await expect(
      run(["--out", join(dir, "bad.gguf"), "--dtype", "Q8_0", "--dim", "48", "--heads", "4"]),
    ).rejects.toThrow(ConfigError);
    await expect(
      run(["--out", join(dir, "bad.gguf"), "--dtype", "Q8_0", "--dim", "48", "--heads", "4"]),
    ).rejects.toThrow(/--dim 48 must be a multiple of 32/);
    await expect(run(["--out", join(dir, "bad.gguf"), "--vocab-size", "100"])).rejects.toThrow(
      /--vocab-size must be from 354/,
    );
    await expect(run(["--out", join(dir, "bad.gguf"), "--dtype", "Q4"])).rejects.toThrow(/F32, F16 or Q8_0/);
  });
});
