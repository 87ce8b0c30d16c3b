import { type FileHandle, open } from "node:fs/promises";
import { ConfigError } from "../errors/index.js";
import { dequantize, ggmlBlockLayout, ggmlByteLength } from "./dequantize.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  type GgufScalarType,
  type GgufTensorInfo,
  type GgufValue,
  ggmlTypeName,
  ggmlTypes,
  ggufValueTypes,
  tensorElementCount,
} from "./gguf-types.js";

const typeById = new Map<number, keyof typeof ggufValueTypes>(
  Object.entries(ggufValueTypes).map(([name, id]) => [id, name as keyof typeof ggufValueTypes]),
);
// ignoreBOM: a token may begin with U+FEFF, which the default decoder would silently drop.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
/** Bytes of each scalar type (a string's 8 are its length prefix). */
const scalarSizes: Record<GgufScalarType, number> = {
  u8: 1,
  i8: 1,
  bool: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  u64: 8,
  i64: 8,
  f64: 8,
  string: 8,
};

/** Reads the header incrementally from a file handle, so multi-GB models are never loaded whole. */
class HeaderCursor {
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;
  position = 0;
  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
  ) {}

  private async ensure(bytes: number): Promise<void> {
    const end = this.position + bytes;
    if (end <= this.bufferStart + this.buffer.length) return;
    const size = Math.max(end - this.position, 1 << 20);
    const chunk = Buffer.alloc(size);
    const { bytesRead } = await this.handle.read(chunk, 0, size, this.position);
    if (bytesRead < end - this.position) {
      throw new ConfigError(`unexpected end of file while reading the GGUF header (is the download complete?)`, {
        path: this.path,
      });
    }
    this.buffer = chunk.subarray(0, bytesRead);
    this.bufferStart = this.position;
  }

  private async view(bytes: number): Promise<Buffer> {
    await this.ensure(bytes);
    const at = this.position - this.bufferStart;
    this.position += bytes;
    return this.buffer.subarray(at, at + bytes);
  }

  /**
   * The next scalar when it is already buffered (and then consumed), else undefined with nothing consumed. Reading
   * the token and merge arrays of a real tokenizer (hundreds of thousands of strings) this way avoids an await each.
   */
  bufferedScalar(type: GgufScalarType): string | number | boolean | bigint | undefined {
    const at = this.position - this.bufferStart;
    const size = scalarSizes[type];
    if (type === "string") {
      if (at + 8 > this.buffer.length) return undefined;
      const length = Number(this.buffer.readBigUInt64LE(at));
      if (at + 8 + length > this.buffer.length) return undefined;
      this.position += 8 + length;
      return decoder.decode(this.buffer.subarray(at + 8, at + 8 + length));
    }
    if (at + size > this.buffer.length) return undefined;
    const b = this.buffer;
    this.position += size;
    switch (type) {
      case "u8":
        return b.readUInt8(at);
      case "i8":
        return b.readInt8(at);
      case "bool":
        return b.readUInt8(at) !== 0;
      case "u16":
        return b.readUInt16LE(at);
      case "i16":
        return b.readInt16LE(at);
      case "u32":
        return b.readUInt32LE(at);
      case "i32":
        return b.readInt32LE(at);
      case "f32":
        return b.readFloatLE(at);
      case "u64":
        return b.readBigUInt64LE(at);
      case "i64":
        return b.readBigInt64LE(at);
      case "f64":
        return b.readDoubleLE(at);
    }
  }

  async scalar(type: GgufScalarType): Promise<string | number | boolean | bigint> {
    switch (type) {
      case "u8":
        return (await this.view(1)).readUInt8(0);
      case "i8":
        return (await this.view(1)).readInt8(0);
      case "bool":
        return (await this.view(1)).readUInt8(0) !== 0;
      case "u16":
        return (await this.view(2)).readUInt16LE(0);
      case "i16":
        return (await this.view(2)).readInt16LE(0);
      case "u32":
        return (await this.view(4)).readUInt32LE(0);
      case "i32":
        return (await this.view(4)).readInt32LE(0);
      case "f32":
        return (await this.view(4)).readFloatLE(0);
      case "u64":
        return (await this.view(8)).readBigUInt64LE(0);
      case "i64":
        return (await this.view(8)).readBigInt64LE(0);
      case "f64":
        return (await this.view(8)).readDoubleLE(0);
      case "string": {
        const length = Number(await this.scalar("u64"));
        return decoder.decode(await this.view(length));
      }
    }
  }
}

export interface GgufHeader {
  version: number;
  metadata: Record<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute byte offset of the tensor data section. */
  dataOffset: number;
}

function valueTypeName(id: number, path: string, key: string): keyof typeof ggufValueTypes {
  const name = typeById.get(id);
  if (!name) throw new ConfigError(`unknown GGUF value type ${id} for key "${key}"`, { path, field: key });
  return name;
}

async function readHeader(handle: FileHandle, path: string): Promise<GgufHeader> {
  const cursor = new HeaderCursor(handle, path);
  const magic = await cursor.scalar("u32");
  if (magic !== GGUF_MAGIC) {
    throw new ConfigError(
      "not a GGUF file (bad magic). Pass a .gguf model file or convert the model with llama.cpp's convert_hf_to_gguf.py",
      { path },
    );
  }
  const version = Number(await cursor.scalar("u32"));
  if (version < 2 || version > 3)
    throw new ConfigError(`unsupported GGUF version ${version} (expected 2 or 3)`, { path });
  const tensorCount = Number(await cursor.scalar("u64"));
  const kvCount = Number(await cursor.scalar("u64"));
  const metadata: Record<string, GgufValue> = {};
  for (let i = 0; i < kvCount; i++) {
    const key = String(await cursor.scalar("string"));
    const type = valueTypeName(Number(await cursor.scalar("u32")), path, key);
    if (type === "array") {
      const itemType = valueTypeName(Number(await cursor.scalar("u32")), path, key);
      if (itemType === "array") throw new ConfigError("nested GGUF arrays are not supported", { path, field: key });
      const count = Number(await cursor.scalar("u64"));
      const value: Array<string | number | boolean | bigint> = new Array(count);
      for (let j = 0; j < count; j++) value[j] = cursor.bufferedScalar(itemType) ?? (await cursor.scalar(itemType));
      metadata[key] = { type: "array", itemType, value };
    } else {
      metadata[key] = { type, value: await cursor.scalar(type) } as GgufValue;
    }
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = String(await cursor.scalar("string"));
    const nDims = Number(await cursor.scalar("u32"));
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(Number(await cursor.scalar("u64")));
    const type = Number(await cursor.scalar("u32"));
    const offset = Number(await cursor.scalar("u64"));
    tensors.push({ name, dims, type, offset });
  }
  const alignmentEntry = metadata["general.alignment"];
  const alignment =
    alignmentEntry && alignmentEntry.type !== "array" ? Number(alignmentEntry.value) : GGUF_DEFAULT_ALIGNMENT;
  const dataOffset = Math.ceil(cursor.position / alignment) * alignment;
  return { version, metadata, tensors, alignment, dataOffset };
}

/** An open GGUF file: header in memory, tensors read (and dequantised to F32) on demand. */
export class GgufFile {
  private constructor(
    readonly path: string,
    readonly header: GgufHeader,
    private readonly handle: FileHandle,
  ) {}

  static async open(path: string): Promise<GgufFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (error) {
      throw new ConfigError(`cannot open model file: ${(error as Error).message}`, { path, cause: error });
    }
    try {
      return new GgufFile(path, await readHeader(handle, path), handle);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  get metadata(): Record<string, GgufValue> {
    return this.header.metadata;
  }

  /** A scalar metadata value, or undefined. */
  value(key: string): string | number | boolean | bigint | undefined {
    const entry = this.header.metadata[key];
    return entry && entry.type !== "array" ? entry.value : undefined;
  }

  tensorInfo(name: string): GgufTensorInfo | undefined {
    return this.header.tensors.find((tensor) => tensor.name === name);
  }

  /** Read a tensor as F32 (the types of {@link ggmlTypes}: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). */
  async readTensor(name: string): Promise<Float32Array> {
    const info = this.tensorInfo(name);
    if (!info) throw new ConfigError(`tensor "${name}" not found`, { path: this.path, field: name });
    const count = tensorElementCount(info.dims);
    const typeName = ggmlTypeName(info.type);
    if (!typeName) {
      throw new ConfigError(
        `tensor "${name}" has ggml type ${info.type}, which selfalign cannot dequantise (supported: ${Object.keys(ggmlTypes).join(", ")}). Use a GGUF in one of these types (F16, Q8_0, or a Q4_K_M/Q5_K_M/Q6_K file) or re-convert the model with --outtype f16`,
        { path: this.path, field: name },
      );
    }
    const byteLength = ggmlByteLength(typeName, count);
    if (byteLength === undefined)
      throw new ConfigError(
        `tensor "${name}" has ${count} elements, not a whole number of ${typeName} blocks of ${ggmlBlockLayout[typeName].elements}`,
        { path: this.path, field: name },
      );
    const bytes = Buffer.alloc(byteLength);
    // One read returns at most about 2 GiB: read until the tensor is whole.
    for (let done = 0; done < byteLength; ) {
      const { bytesRead } = await this.handle.read(
        bytes,
        done,
        Math.min(byteLength - done, 1 << 30),
        this.header.dataOffset + info.offset + done,
      );
      if (bytesRead === 0)
        throw new ConfigError(
          `tensor "${name}" ends past the end of the file (${done} of ${byteLength} bytes): the file is truncated; download it again`,
          { path: this.path, field: name },
        );
      done += bytesRead;
    }
    return dequantize(typeName, bytes, count);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** Read only the header (metadata and tensor table) of a GGUF file. */
export async function readGgufHeader(path: string): Promise<GgufHeader> {
  const file = await GgufFile.open(path);
  await file.close();
  return file.header;
}
