import type { Command } from "commander";
import { ConfigError } from "../../errors/index.js";
import { positiveInteger } from "../flags.js";
import { tinyArchitectures, type TinyArchitecture, writeTinyModel } from "../../gguf/index.js";

export function registerModel(program: Command): void {
  const model = program.command("model").description("Create and inspect model files.");
  model
    .command("tiny")
    .description(
      "Write a random-weight LLaMA-architecture GGUF with selfalign's byte-level vocabulary, optionally padded to a real model's vocabulary size (for tests, demos and benchmarks).",
    )
    .requiredOption("--out <path>", "output .gguf file")
    .option("--arch <name>", `architecture: ${tinyArchitectures.join(" | ")}`, "llama")
    .option("--layers <n>", "transformer blocks", positiveInteger("layers"), 2)
    .option("--dim <n>", "embedding width", positiveInteger("dim"), 64)
    .option("--heads <n>", "attention heads", positiveInteger("heads"), 4)
    .option("--kv-heads <n>", "key/value heads (grouped-query attention)", positiveInteger("kv-heads"), 2)
    .option("--ffn <n>", "feed-forward width", positiveInteger("ffn"), 128)
    .option("--context <n>", "context length", positiveInteger("context"), 2048)
    .option("--seed <n>", "random seed", positiveInteger("seed"), 1)
    .option("--dtype <type>", "storage type of the 2-D weights: F32 | F16 | Q8_0", "F32")
    .option(
      "--vocab-size <n>",
      "vocabulary size: 354 (the byte vocabulary) or more, padded with synthetic word tokens, for a real model's exact shape",
      positiveInteger("vocab-size"),
      354,
    )
    .option("--tied", "tie output head to token embeddings", false)
    .action(async (options) => {
      if (!tinyArchitectures.includes(options.arch)) {
        throw new ConfigError(`--arch must be one of ${tinyArchitectures.join(", ")}, got "${options.arch}"`);
      }
      const dtype = String(options.dtype).toUpperCase();
      if (dtype !== "F32" && dtype !== "F16" && dtype !== "Q8_0")
        throw new ConfigError(`--dtype must be F32, F16 or Q8_0, got "${options.dtype}"`, { field: "dtype" });
      if (options.vocabSize < 354 || options.vocabSize > 1_000_000)
        throw new ConfigError(
          `--vocab-size must be from 354 (the byte vocabulary) to 1000000, got ${options.vocabSize}`,
          { field: "vocab-size" },
        );
      if (dtype === "Q8_0")
        for (const [flag, width] of [
          ["--dim", options.dim],
          ["--ffn", options.ffn],
        ] as const)
          if (width % 32 !== 0)
            throw new ConfigError(
              `--dtype Q8_0 stores rows in blocks of 32 values: ${flag} ${width} must be a multiple of 32`,
              { field: flag.slice(2) },
            );
      const { parameterCount } = await writeTinyModel(options.out, {
        architecture: options.arch as TinyArchitecture,
        layers: options.layers,
        dim: options.dim,
        heads: options.heads,
        kvHeads: options.kvHeads,
        ffn: options.ffn,
        contextLength: options.context,
        seed: options.seed,
        dtype,
        tiedEmbeddings: options.tied,
        vocabSize: options.vocabSize,
      });
      process.stdout.write(
        `wrote ${options.out}: ${parameterCount.toLocaleString("en-US")} parameters (random weights)\n`,
      );
    });
}
