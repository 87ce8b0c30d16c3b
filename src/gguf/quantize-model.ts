/**
 * Write a quantised copy of a GGUF model as llama-quantize would lay it out (k-quants.ts): each 2-D weight in the
 * recipe's type, norms and biases in F32, metadata copied with general.file_type set. For the test- and
 * rehearsal-size models this project writes: every tensor is read into memory.
 */
import { ConfigError } from "../errors/index.js";
import { GgufFile } from "./gguf-reader.js";
import { type GgufEncodedTensor, type GgufTensorInput, writeGguf } from "./gguf-writer.js";
import { type GgufValue, gguf } from "./gguf-types.js";
import { type QuantizationRecipe, quantize, recipeFileTypes, recipeType } from "./k-quants.js";

export interface QuantizeModelResult {
  /** Tensor count per storage type written. */
  types: Record<string, number>;
}

export async function quantizeModel(
  input: string,
  output: string,
  recipe: QuantizationRecipe,
): Promise<QuantizeModelResult> {
  const file = await GgufFile.open(input);
  try {
    const architecture = String(file.value("general.architecture") ?? "");
    const layers = Number(file.value(`${architecture}.block_count`) ?? 0);
    const tied = file.tensorInfo("output.weight") === undefined;
    const tensors: Array<GgufTensorInput | GgufEncodedTensor> = [];
    const types: Record<string, number> = {};
    for (const info of file.header.tensors) {
      const data = await file.readTensor(info.name);
      if (info.dims.length < 2) {
        tensors.push({ name: info.name, dims: info.dims, data });
        types.F32 = (types.F32 ?? 0) + 1;
        continue;
      }
      const type = recipeType(recipe, info.name, layers, tied);
      const block = type === "Q8_0" ? 32 : 256;
      if (info.dims[0]! % block !== 0)
        throw new ConfigError(
          `tensor ${info.name} has rows of ${info.dims[0]} values, not whole ${type} blocks of ${block}: use model widths that are multiples of ${block} for ${recipe}`,
          { path: input, field: info.name },
        );
      tensors.push({ name: info.name, dims: info.dims, type, bytes: quantize(type, data) });
      types[type] = (types[type] ?? 0) + 1;
    }
    const metadata: Record<string, GgufValue> = {
      ...file.metadata,
      "general.file_type": gguf.u32(recipeFileTypes[recipe]),
    };
    // The writer sets general.alignment itself from the alignment it is given.
    delete metadata["general.alignment"];
    await writeGguf(output, { metadata, tensors, alignment: file.header.alignment });
    return { types };
  } finally {
    await file.close();
  }
}
