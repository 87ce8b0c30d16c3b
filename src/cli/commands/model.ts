import type { Command } from "commander";
import { ConfigError } from "../../errors/index.js";
import { positiveInteger } from "../flags.js";
import {
  BYTE_VOCAB_SIZE,
  byteVocabulary,
  llamaCppVocabularyNames,
  openLlamaCppSource,
  type QuantizationRecipe,
  quantizationRecipes,
  quantizeModel,
  readVocabulary,
  llamaCppVocabularyPath,
  resolveChatTemplate,
  resolveVocabulary,
  tinyArchitectures,
  type TinyArchitecture,
  withChatTemplate,
  writeTinyModel,
} from "../../gguf/index.js";

export function registerModel(program: Command): void {
  const model = program.command("model").description("Create and inspect model files.");
  model
    .command("tiny")
    .description(
      "Write a random-weight LLaMA-architecture GGUF (for tests, demos and benchmarks), with selfalign's byte-level vocabulary (optionally padded to a real model's vocabulary size) or a real model's tokenizer.",
    )
    .requiredOption("--out <path>", "output .gguf file")
    .option("--arch <name>", `architecture: ${tinyArchitectures.join(" | ")}`, "llama")
    .option("--layers <n>", "transformer blocks", positiveInteger("layers"), 2)
    .option("--dim <n>", "embedding width", positiveInteger("dim"), 64)
    .option("--heads <n>", "attention heads", positiveInteger("heads"), 4)
    .option("--head-dim <n>", "size of each attention head (default: dim / heads)", positiveInteger("head-dim"))
    .option("--kv-heads <n>", "key/value heads (grouped-query attention)", positiveInteger("kv-heads"), 2)
    .option("--ffn <n>", "feed-forward width", positiveInteger("ffn"), 128)
    .option("--context <n>", "context length", positiveInteger("context"), 2048)
    .option("--seed <n>", "random seed", positiveInteger("seed"), 1)
    .option("--dtype <type>", "storage type of the 2-D weights: F32 | F16 | Q8_0", "F32")
    .option(
      "--vocab-size <n>",
      `vocabulary size: ${BYTE_VOCAB_SIZE} (the byte vocabulary) or more, padded with synthetic word tokens, for a real model's exact shape`,
      positiveInteger("vocab-size"),
      BYTE_VOCAB_SIZE,
    )
    .option("--tied", "tie output head to token embeddings", false)
    .option(
      "--vocab <name|file>",
      "tokenizer: bytes (default), a vocabulary of llama.cpp's source (selfalign model vocabularies lists them), or a .gguf whose tokenizer to copy",
      "bytes",
    )
    .option(
      "--chat-template <name|file>",
      "chat template: a .jinja file or a template of llama.cpp's models/templates (replaces the vocabulary's own)",
    )
    .action(async (options) => {
      if (!tinyArchitectures.includes(options.arch)) {
        throw new ConfigError(`--arch must be one of ${tinyArchitectures.join(", ")}, got "${options.arch}"`);
      }
      const dtype = String(options.dtype).toUpperCase();
      if (dtype !== "F32" && dtype !== "F16" && dtype !== "Q8_0")
        throw new ConfigError(`--dtype must be F32, F16 or Q8_0, got "${options.dtype}"`, { field: "dtype" });
      if (options.vocabSize < BYTE_VOCAB_SIZE || options.vocabSize > 1_000_000)
        throw new ConfigError(
          `--vocab-size must be from ${BYTE_VOCAB_SIZE} (the byte vocabulary) to 1000000, got ${options.vocabSize}`,
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
      if (options.vocab !== "bytes" && options.vocabSize !== BYTE_VOCAB_SIZE)
        throw new ConfigError("--vocab-size pads the byte vocabulary; a --vocab tokenizer brings its own size", {
          field: "vocab-size",
        });
      let vocabulary =
        options.vocab === "bytes" ? byteVocabulary(options.vocabSize) : await resolveVocabulary(String(options.vocab));
      let templateSource: string | undefined;
      if (options.chatTemplate !== undefined) {
        const { template, source } = await resolveChatTemplate(String(options.chatTemplate));
        vocabulary = withChatTemplate(vocabulary, template);
        templateSource = source;
      }
      const { parameterCount } = await writeTinyModel(options.out, {
        vocabulary,
        architecture: options.arch as TinyArchitecture,
        layers: options.layers,
        dim: options.dim,
        heads: options.heads,
        kvHeads: options.kvHeads,
        ...(options.headDim === undefined ? {} : { headDim: options.headDim }),
        ffn: options.ffn,
        contextLength: options.context,
        seed: options.seed,
        dtype,
        tiedEmbeddings: options.tied,
      });
      const template = vocabulary.metadata["tokenizer.chat_template"] ? (templateSource ?? "the vocabulary's") : "none";
      process.stdout.write(
        `wrote ${options.out}: ${parameterCount.toLocaleString("en-US")} parameters (random weights)\n` +
          `vocabulary: ${vocabulary.size.toLocaleString("en-US")} tokens from ${vocabulary.source}; chat template: ${template}\n`,
      );
    });
  model
    .command("quantize")
    .description(
      "Write a quantised copy of a GGUF model with llama-quantize's per-tensor types (Q4_K_M, Q5_K_M, Q8_0), for rehearsing a quantised base.",
    )
    .requiredOption("--in <path>", "GGUF model to quantise (F32/F16/BF16 or any type selfalign reads)")
    .requiredOption("--out <path>", "output .gguf file")
    .requiredOption("--type <recipe>", `${quantizationRecipes.join(" | ")}`)
    .action(async (options: { in: string; out: string; type: string }) => {
      const recipe = options.type.toUpperCase();
      if (!(quantizationRecipes as readonly string[]).includes(recipe))
        throw new ConfigError(`--type must be one of ${quantizationRecipes.join(", ")}, got "${options.type}"`);
      const { types } = await quantizeModel(options.in, options.out, recipe as QuantizationRecipe);
      const summary = Object.entries(types)
        .map(([type, count]) => `${count} ${type}`)
        .join(", ");
      process.stdout.write(`wrote ${options.out} (${recipe}): ${summary}\n`);
    });
  model
    .command("vocabularies")
    .description(
      "List the real tokenizers that `model tiny --vocab` can use: the vocabulary files of llama.cpp's source, as node-llama-cpp ships it.",
    )
    .action(async () => {
      const source = await openLlamaCppSource();
      const lines = [`llama.cpp ${source.commit} (${source.bundlePath}):`];
      for (const name of await llamaCppVocabularyNames(source)) {
        const vocabulary = await readVocabulary(await source.extract(llamaCppVocabularyPath(name)));
        const kind = vocabulary.metadata["tokenizer.ggml.model"];
        const template = vocabulary.metadata["tokenizer.chat_template"] ? ", chat template" : "";
        lines.push(
          `  ${name.padEnd(20)} ${vocabulary.size.toString().padStart(7)} tokens, ${kind?.type === "string" ? kind.value : "?"}${template}`,
        );
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    });
  model
    .command("convert-peft")
    .description(
      "Convert a PEFT LoRA (transformers + peft, OpenRLHF, TRL) to a GGUF LoRA for a GGUF base; a reward model " +
        "(a score head) becomes a folder selfalign serve --reward-model reads.",
    )
    .requiredOption("--peft <dir>", "PEFT adapter folder (adapter_config.json, adapter_model.safetensors)")
    .requiredOption("--base <gguf>", "the base model the adapter was trained on, as a GGUF")
    .requiredOption("--out <path>", "the .gguf to write (a folder for a reward model)")
    .action(async (options: { peft: string; base: string; out: string }) => {
      const { readLlamaModelConfig } = await import("../../training/embedded/llama-weights.js");
      const { loadAdapter } = await import("../../training/embedded/adapter-source.js");
      const loaded = await loadAdapter(options.peft, await readLlamaModelConfig(options.base));
      if (loaded.head) {
        const { mkdir } = await import("node:fs/promises");
        const { convertPeftRewardModel } = await import("../../training/reward/peft-reward-model.js");
        await mkdir(options.out, { recursive: true });
        const result = await convertPeftRewardModel(options.peft, options.base, options.out);
        process.stdout.write(
          `wrote the reward model ${options.out} (${result.adapterPath}, ${result.headPath}); serve it with selfalign serve --reward-model ${options.out}\n`,
        );
        return;
      }
      const { convertPeftToGgufLora } = await import("../../training/export/peft-adapter.js");
      const adapter = await convertPeftToGgufLora(options.peft, options.base, options.out);
      process.stdout.write(
        `wrote ${options.out}: rank ${adapter.rank}, ${adapter.modules.length} modules (load it with --adapter ${options.out})\n`,
      );
    });
}
