import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../src/errors/index.js";
import { buildTinyModel, encodeGguf, gguf, writeTinyModel } from "../src/gguf/index.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import type { SftExample, TrainOptions } from "../src/training/trainer.js";

let dir: string;
let basePath: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-errors-"));
  basePath = join(dir, "base.gguf");
  await writeTinyModel(basePath, { dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 1, contextLength: 64 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const examples: SftExample[] = [{ prompt: "Q: a?\nA:", completion: " b" }];
const options: TrainOptions = { kernel: "ts", maxSteps: 1, rank: 4, checkpointEvery: 0 };

async function trainError(base: string, data: SftExample[], extra: TrainOptions = {}): Promise<ConfigError> {
  const error = await new EmbeddedTrainer()
    .train({ base, examples: data, output: join(dir, "out"), options: { ...options, ...extra } })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

describe("embedded trainer input errors", () => {
  it("unsupported architecture names it and the supported ones", async () => {
    const { metadata, tensors } = buildTinyModel({ dim: 32, heads: 4, layers: 1 });
    metadata["general.architecture"] = gguf.string("gpt2");
    const path = join(dir, "gpt2.gguf");
    await writeFile(path, encodeGguf({ metadata, tensors }));
    const error = await trainError(path, examples);
    expect(error.message).toContain(
      "unsupported architecture gpt2; supported: llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3. Use the hf trainer",
    );
  });

  it("a phi3 model with LongRoPE factors (the 128K-context variants) is refused before any work", async () => {
    const { metadata, tensors } = buildTinyModel({ architecture: "phi3", dim: 32, heads: 4, kvHeads: 2, layers: 1 });
    tensors.push({ name: "rope_factors_long.weight", dims: [4], data: Float32Array.of(1, 2, 3, 4) });
    tensors.push({ name: "rope_factors_short.weight", dims: [4], data: Float32Array.of(1, 1, 1, 1) });
    const path = join(dir, "phi3-longrope.gguf");
    await writeFile(path, encodeGguf({ metadata, tensors }));
    const error = await trainError(path, examples);
    expect(error.message).toMatch(/LongRoPE frequency factors .* not implement/);
    expect(error.field).toBe("rope_factors_long.weight");
  });

  it("unsupported quantisation comes from the reader with a fix", async () => {
    const { metadata, tensors } = buildTinyModel({ dim: 32, heads: 4, kvHeads: 2, layers: 1 });
    const bytes = Buffer.from(encodeGguf({ metadata, tensors }));
    // Patch blk.0.attn_q.weight's ggml type (after name, n_dims u32 and 2 u64 dims) to 10 = Q2_K (not read here).
    const name = Buffer.from("blk.0.attn_q.weight");
    const at = bytes.indexOf(name) + name.length + 4 + 16;
    expect(bytes.readUInt32LE(at)).toBe(0);
    bytes.writeUInt32LE(10, at);
    const path = join(dir, "q2_k.gguf");
    await writeFile(path, bytes);
    const error = await trainError(path, examples);
    expect(error.message).toMatch(
      /ggml type 10.*supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16\).*Q4_K_M/,
    );
  });

  it("rank larger than a projection", async () => {
    const error = await trainError(basePath, examples, { rank: 20, targets: ["k"] });
    expect(error.message).toContain("LoRA rank 20 is larger than min(n_in, n_out) = 16 of the k projection");
  });

  it("empty dataset", async () => {
    const error = await trainError(basePath, []);
    expect(error.message).toContain("the training dataset is empty");
  });

  it("example longer than the context names the example and lengths and suggests a fix", async () => {
    const long = { prompt: "x".repeat(80), completion: " y" };
    const error = await trainError(basePath, [examples[0]!, long]);
    expect(error.message).toMatch(
      /example 1 is \d+ tokens long \(prompt \d+ \+ completion \d+\), longer than the context of 64 tokens/,
    );
    expect(error.message).toContain("cutoffLen");
  });

  it("cutoffLen beyond the model context", async () => {
    const error = await trainError(basePath, examples, { cutoffLen: 1000 });
    expect(error.message).toContain("cutoffLen 1000 is longer than the model's context of 64");
  });

  it("overlong examples can be truncated or dropped instead", async () => {
    const long = { prompt: "Q:", completion: " z".repeat(60) };
    for (const overlong of ["truncate", "drop"] as const) {
      const result = await new EmbeddedTrainer().train({
        base: basePath,
        examples: [examples[0]!, long],
        output: join(dir, overlong),
        options: { ...options, overlong, cutoffLen: 32 },
      });
      expect(result.steps).toBe(1);
      expect(Number.isFinite(result.finalLoss)).toBe(true);
    }
  });
});
