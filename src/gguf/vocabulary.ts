/**
 * A tokenizer as GGUF metadata: every `tokenizer.*` key of a model or vocabulary-only file (tokens, scores, types,
 * merges, pre-tokenizer, special token ids, add_bos/add_eos flags, chat templates), so a random-weight model can be
 * written with a real model's tokenizer. Sources: a GGUF file, or a vocabulary of llama.cpp's source tree by name.
 */
import { readFile } from "node:fs/promises";
import { ConfigError } from "../errors/index.js";
import { BYTE_VOCAB_SIZE, byteVocabMetadata } from "./byte-vocab.js";
import { syntheticVocabTokens } from "./synthetic-vocab.js";
import { GgufFile } from "./gguf-reader.js";
import { type GgufValue, gguf } from "./gguf-types.js";
import {
  type LlamaCppSourceOptions,
  llamaCppTemplateNames,
  llamaCppTemplatePath,
  llamaCppVocabularyNames,
  llamaCppVocabularyPath,
  openLlamaCppSource,
} from "./llama-cpp-source.js";

export interface Vocabulary {
  /** The `tokenizer.*` metadata, copied as it is. */
  metadata: Record<string, GgufValue>;
  /** Number of tokens. */
  size: number;
  /** Where it came from, for people: `llama.cpp <commit> models/ggml-vocab-llama-bpe.gguf`, a file path, or "bytes". */
  source: string;
}

/**
 * selfalign's own byte-level vocabulary (354 tokens), or, with a larger `size`, the same padded with synthetic word
 * tokens (synthetic-vocab.ts) so a model can have a real model's exact shape, e.g. 49152 tokens.
 */
export function byteVocabulary(size = BYTE_VOCAB_SIZE): Vocabulary {
  if (size === BYTE_VOCAB_SIZE)
    return { metadata: byteVocabMetadata(), size, source: "bytes (selfalign's byte-level vocabulary)" };
  if (!Number.isInteger(size) || size < BYTE_VOCAB_SIZE || size > 1_000_000)
    throw new Error(`vocab size must be an integer from ${BYTE_VOCAB_SIZE} to 1000000, got ${size}`);
  return {
    metadata: byteVocabMetadata(syntheticVocabTokens(size)),
    size,
    source: `bytes padded with synthetic word tokens to ${size}`,
  };
}

/** The tokenizer of a GGUF file (a model or a vocabulary-only file); only its header is read. */
export async function readVocabulary(path: string, source = path): Promise<Vocabulary> {
  const file = await GgufFile.open(path);
  try {
    const metadata: Record<string, GgufValue> = {};
    for (const [key, value] of Object.entries(file.metadata)) if (key.startsWith("tokenizer.")) metadata[key] = value;
    const tokens = metadata["tokenizer.ggml.tokens"];
    if (!tokens || tokens.type !== "array" || tokens.value.length === 0) {
      throw new ConfigError(
        "the file has no tokenizer (no tokenizer.ggml.tokens): pass a GGUF model or vocabulary file, or a vocabulary name (selfalign model vocabularies lists them)",
        { path, field: "tokenizer.ggml.tokens" },
      );
    }
    return { metadata, size: tokens.value.length, source };
  } finally {
    await file.close();
  }
}

/** A vocabulary from llama.cpp's source tree (`llama-bpe`, `qwen2`, ...), as bundled with node-llama-cpp. */
export async function llamaCppVocabulary(name: string, options: LlamaCppSourceOptions = {}): Promise<Vocabulary> {
  const source = await openLlamaCppSource(options);
  const names = await llamaCppVocabularyNames(source);
  if (!names.includes(name)) {
    throw new ConfigError(
      `llama.cpp ${source.commit.slice(0, 10)} has no vocabulary "${name}"; expected one of ${names.join(", ")}, "bytes", or a path to a .gguf file`,
      { field: "vocab" },
    );
  }
  const path = llamaCppVocabularyPath(name);
  return readVocabulary(await source.extract(path), `llama.cpp ${source.commit.slice(0, 10)} ${path}`);
}

/** `bytes`, a llama.cpp vocabulary name, or a path to a GGUF file (anything with a `/`, `\` or a .gguf ending). */
export async function resolveVocabulary(spec: string, options: LlamaCppSourceOptions = {}): Promise<Vocabulary> {
  if (spec === "bytes") return byteVocabulary();
  if (/[\\/]/.test(spec) || spec.endsWith(".gguf")) return readVocabulary(spec);
  return llamaCppVocabulary(spec, options);
}

/** A chat template: a llama.cpp template name (`meta-llama-Llama-3.1-8B-Instruct`) or a path to a .jinja file. */
export async function resolveChatTemplate(
  spec: string,
  options: LlamaCppSourceOptions = {},
): Promise<{ template: string; source: string }> {
  if (/[\\/]/.test(spec) || spec.endsWith(".jinja")) {
    try {
      return { template: await readFile(spec, "utf8"), source: spec };
    } catch (error) {
      throw new ConfigError(`cannot read the chat template: ${(error as Error).message}`, { path: spec, cause: error });
    }
  }
  const source = await openLlamaCppSource(options);
  const names = await llamaCppTemplateNames(source);
  if (!names.includes(spec)) {
    throw new ConfigError(
      `llama.cpp ${source.commit.slice(0, 10)} has no chat template "${spec}"; expected a path to a .jinja file or one of ${names.join(", ")}`,
      { field: "chat-template" },
    );
  }
  const path = llamaCppTemplatePath(spec);
  return {
    template: (await source.read(path)).toString("utf8"),
    source: `llama.cpp ${source.commit.slice(0, 10)} ${path}`,
  };
}

/** The vocabulary with `tokenizer.chat_template` set (replacing the file's own). */
export function withChatTemplate(vocabulary: Vocabulary, template: string): Vocabulary {
  return { ...vocabulary, metadata: { ...vocabulary.metadata, "tokenizer.chat_template": gguf.string(template) } };
}
