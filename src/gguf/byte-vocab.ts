import { type GgufValue, gguf } from "./gguf-types.js";

/**
 * Our own byte-level SentencePiece-style vocabulary (no licence question): <unk>, <s>, </s>, the 256 byte
 * tokens <0x00>..<0xFF> (byte fallback), "▁" (space), and the 94 printable ASCII characters. 354 tokens.
 */
export const BYTE_VOCAB_SIZE = 354;
export const BYTE_VOCAB_BOS = 1;
export const BYTE_VOCAB_EOS = 2;

const tokenTypeNormal = 1;
const tokenTypeUnknown = 2;
const tokenTypeControl = 3;
const tokenTypeByte = 6;

export function byteVocabTokens(): { tokens: string[]; types: number[]; scores: number[] } {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [tokenTypeUnknown, tokenTypeControl, tokenTypeControl];
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(`<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(tokenTypeByte);
  }
  tokens.push("\u2581");
  types.push(tokenTypeNormal);
  for (let code = 0x21; code <= 0x7e; code++) {
    tokens.push(String.fromCharCode(code));
    types.push(tokenTypeNormal);
  }
  const scores = tokens.map((_, i) => (types[i] === tokenTypeNormal ? -i : 0));
  return { tokens, types, scores };
}

/** The `tokenizer.ggml.*` metadata of the byte vocabulary (or of one that extends it, with the same special ids). */
export function byteVocabMetadata(
  { tokens, types, scores }: { tokens: string[]; types: number[]; scores: number[] } = byteVocabTokens(),
): Record<string, GgufValue> {
  return {
    "tokenizer.ggml.model": gguf.string("llama"),
    "tokenizer.ggml.tokens": gguf.array("string", tokens),
    "tokenizer.ggml.scores": gguf.array("f32", scores),
    "tokenizer.ggml.token_type": gguf.array("i32", types),
    "tokenizer.ggml.unknown_token_id": gguf.u32(0),
    "tokenizer.ggml.bos_token_id": gguf.u32(BYTE_VOCAB_BOS),
    "tokenizer.ggml.eos_token_id": gguf.u32(BYTE_VOCAB_EOS),
    "tokenizer.ggml.add_bos_token": gguf.bool(true),
    "tokenizer.ggml.add_eos_token": gguf.bool(false),
  };
}
