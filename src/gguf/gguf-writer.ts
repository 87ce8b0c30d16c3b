import { open } from "node:fs/promises";
import { ggmlBlockLayout, ggmlByteLength } from "./dequantize.js";
import { float32ToFloat16Bits } from "./float16.js";
import { quantizeQ8_0 } from "./k-quants.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  type GgmlTypeName,
  type GgufScalarType,
  type GgufValue,
  ggmlTypes,
  ggufValueTypes,
  tensorElementCount,
} from "./gguf-types.js";

/** A tensor to write: data in row-major order of `dims` reversed (ggml: dims[0] varies fastest). */
export interface GgufTensorInput {
  name: string;
  dims: number[];
  data: Float32Array;
  /** Storage type: F32 (default), F16, or Q8_0 (quantised here; rows must be whole 32-value blocks). */
  type?: "F32" | "F16" | "Q8_0";
}

/** A tensor already encoded in its ggml type (e.g. quantised blocks), written as it is. */
export interface GgufEncodedTensor {
  name: string;
  dims: number[];
  type: GgmlTypeName;
  bytes: Uint8Array;
}

export interface GgufWriteOptions {
  metadata: Record<string, GgufValue>;
  tensors: Array<GgufTensorInput | GgufEncodedTensor>;
  alignment?: number;
}

const encoder = new TextEncoder();

const scalarSize = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 } as const;

function writeScalar(
  view: DataView,
  at: number,
  type: Exclude<GgufScalarType, "string">,
  value: string | number | boolean | bigint,
): void {
  switch (type) {
    case "u8":
      view.setUint8(at, Number(value));
      break;
    case "i8":
      view.setInt8(at, Number(value));
      break;
    case "bool":
      view.setUint8(at, value ? 1 : 0);
      break;
    case "u16":
      view.setUint16(at, Number(value), true);
      break;
    case "i16":
      view.setInt16(at, Number(value), true);
      break;
    case "u32":
      view.setUint32(at, Number(value), true);
      break;
    case "i32":
      view.setInt32(at, Number(value), true);
      break;
    case "f32":
      view.setFloat32(at, Number(value), true);
      break;
    case "u64":
      view.setBigUint64(at, BigInt(value), true);
      break;
    case "i64":
      view.setBigInt64(at, BigInt(value), true);
      break;
    case "f64":
      view.setFloat64(at, Number(value), true);
      break;
  }
}

class ByteSink {
  private chunks: Uint8Array[] = [];
  length = 0;
  push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }
  scalar(type: GgufScalarType, value: string | number | boolean | bigint): void {
    if (type === "string") {
      const bytes = encoder.encode(String(value));
      this.scalar("u64", BigInt(bytes.length));
      this.push(bytes);
      return;
    }
    const size = scalarSize[type];
    const view = new DataView(new ArrayBuffer(size));
    writeScalar(view, 0, type, value);
    this.push(new Uint8Array(view.buffer));
  }
  pad(alignment: number): void {
    const rest = this.length % alignment;
    if (rest) this.push(new Uint8Array(alignment - rest));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}

/**
 * The items of a metadata array, encoded into one buffer: a real tokenizer has hundreds of thousands of tokens and
 * merges, which one small buffer per item would make slow to write.
 */
function encodeArray(itemType: GgufScalarType, values: ReadonlyArray<string | number | boolean | bigint>): Uint8Array {
  if (itemType === "string") {
    const encoded = values.map((value) => encoder.encode(String(value)));
    const out = new Uint8Array(encoded.reduce((sum, bytes) => sum + 8 + bytes.length, 0));
    const view = new DataView(out.buffer);
    let at = 0;
    for (const bytes of encoded) {
      view.setBigUint64(at, BigInt(bytes.length), true);
      out.set(bytes, at + 8);
      at += 8 + bytes.length;
    }
    return out;
  }
  const size = scalarSize[itemType];
  const out = new Uint8Array(values.length * size);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) writeScalar(view, i * size, itemType, values[i]!);
  return out;
}

/** Throw unless a tensor's data fits its dims and type (checked for all tensors before anything is written). */
function checkTensor(tensor: GgufTensorInput | GgufEncodedTensor): void {
  const expected = tensorElementCount(tensor.dims);
  const type = tensor.type ?? "F32";
  // llama.cpp quantises rows: the row length (dims[0]) must be a whole number of blocks.
  const { elements } = ggmlBlockLayout[type];
  if ((tensor.dims[0] ?? 0) % elements !== 0)
    throw new Error(`tensor ${tensor.name}: rows of ${tensor.dims[0]} are not whole ${type} blocks of ${elements}`);
  if ("bytes" in tensor) {
    const length = ggmlByteLength(tensor.type, expected);
    if (length !== tensor.bytes.length)
      throw new Error(
        `tensor ${tensor.name}: dims [${tensor.dims}] in ${tensor.type} need ${length ?? "whole blocks of"} bytes, got ${tensor.bytes.length}`,
      );
  } else if (tensor.data.length !== expected) {
    throw new Error(`tensor ${tensor.name}: dims [${tensor.dims}] need ${expected} values, got ${tensor.data.length}`);
  }
}

function tensorBytes(tensor: GgufTensorInput | GgufEncodedTensor): Uint8Array {
  if ("bytes" in tensor) return tensor.bytes;
  if (tensor.type === "Q8_0") return quantizeQ8_0(tensor.data);
  if ((tensor.type ?? "F32") === "F32") {
    return new Uint8Array(
      tensor.data.buffer.slice(tensor.data.byteOffset, tensor.data.byteOffset + tensor.data.byteLength),
    );
  }
  const half = new Uint16Array(tensor.data.length);
  for (let i = 0; i < half.length; i++) half[i] = float32ToFloat16Bits(tensor.data[i]!);
  return new Uint8Array(half.buffer);
}

/** Bytes a tensor takes in the file (without padding), known before it is encoded. */
function storedLength(tensor: GgufTensorInput | GgufEncodedTensor): number {
  if ("bytes" in tensor) return tensor.bytes.length;
  const count = tensorElementCount(tensor.dims);
  return ggmlByteLength(tensor.type ?? "F32", count) ?? count * 4;
}

/**
 * A GGUF v3 file as chunks: the header with the tensor table, then each tensor's data encoded only when its
 * chunk is reached, so a model of hundreds of MB is never held encoded all at once.
 */
function* ggufChunks(options: GgufWriteOptions): Generator<Uint8Array> {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const metadata = { ...options.metadata };
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) metadata["general.alignment"] = { type: "u32", value: alignment };
  for (const tensor of options.tensors) checkTensor(tensor);
  const sink = new ByteSink();
  sink.scalar("u32", GGUF_MAGIC);
  sink.scalar("u32", 3);
  sink.scalar("u64", BigInt(options.tensors.length));
  sink.scalar("u64", BigInt(Object.keys(metadata).length));
  for (const [key, entry] of Object.entries(metadata)) {
    sink.scalar("string", key);
    sink.scalar("u32", ggufValueTypes[entry.type]);
    if (entry.type === "array") {
      sink.scalar("u32", ggufValueTypes[entry.itemType]);
      sink.scalar("u64", BigInt(entry.value.length));
      sink.push(encodeArray(entry.itemType, entry.value));
    } else {
      sink.scalar(entry.type, entry.value);
    }
  }
  const padding = (length: number) => new Uint8Array((alignment - (length % alignment)) % alignment);
  let offset = 0;
  for (const tensor of options.tensors) {
    sink.scalar("string", tensor.name);
    sink.scalar("u32", tensor.dims.length);
    for (const dim of tensor.dims) sink.scalar("u64", BigInt(dim));
    sink.scalar("u32", ggmlTypes[tensor.type ?? "F32"]);
    sink.scalar("u64", BigInt(offset));
    offset += storedLength(tensor);
    offset += padding(offset).length;
  }
  sink.pad(alignment);
  yield sink.concat();
  for (const tensor of options.tensors) {
    const data = tensorBytes(tensor);
    yield data;
    yield padding(data.length);
  }
}

/** Serialise a GGUF v3 file to bytes. */
export function encodeGguf(options: GgufWriteOptions): Uint8Array {
  const chunks = [...ggufChunks(options)];
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Write a GGUF v3 file, one tensor at a time. */
export async function writeGguf(path: string, options: GgufWriteOptions): Promise<void> {
  const file = await open(path, "w");
  try {
    for (const chunk of ggufChunks(options)) if (chunk.length > 0) await file.write(chunk);
  } finally {
    await file.close();
  }
}
