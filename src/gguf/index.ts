export { BYTE_VOCAB_BOS, BYTE_VOCAB_EOS, BYTE_VOCAB_SIZE, byteVocabMetadata, byteVocabTokens } from "./byte-vocab.js";
export { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToFloat16Bits, roundThroughFloat16 } from "./float16.js";
export { dequantize, ggmlBlockLayout, ggmlByteLength } from "./dequantize.js";
export { GgufFile, type GgufHeader, readGgufHeader } from "./gguf-reader.js";
export * from "./gguf-types.js";
export {
  encodeGguf,
  type GgufEncodedTensor,
  type GgufTensorInput,
  type GgufWriteOptions,
  writeGguf,
} from "./gguf-writer.js";
export * from "./tiny-model.js";
export {
  type LlamaCppSource,
  type LlamaCppSourceOptions,
  llamaCppBundlePath,
  llamaCppTemplateNames,
  llamaCppTemplatePath,
  llamaCppTokenizerTests,
  llamaCppVocabularyNames,
  llamaCppVocabularyPath,
  openLlamaCppSource,
} from "./llama-cpp-source.js";
export {
  byteVocabulary,
  llamaCppVocabulary,
  readVocabulary,
  resolveChatTemplate,
  resolveVocabulary,
  type Vocabulary,
  withChatTemplate,
} from "./vocabulary.js";
export {
  type QuantizationRecipe,
  type QuantizedType,
  quantizationRecipes,
  quantize,
  quantizedTypes,
  recipeType,
} from "./k-quants.js";
export { quantizeModel, type QuantizeModelResult } from "./quantize-model.js";
