/**
 * The safetensors format, written and read here: 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}` padded with spaces to
 * 8 bytes, then the raw little-endian tensor bytes (offsets relative to the end of the header).
 */
import { readFile, writeFile } from "node:fs/promises";
import { ConfigError } from "../../errors/index.js";
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
} from "../../gguf/float16.js";

export const safetensorsDtypes = ["F32", "F16", "BF16"] as const;
export type SafetensorsDtype = (typeof safetensorsDtypes)[number];

const bytesPerValue: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export interface SafetensorsTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  /** Storage type in the file. Default "F32"; F16 and BF16 round each value to nearest even. */
  dtype?: SafetensorsDtype;
}

export interface SafetensorsContent {
  metadata: Record<string, string>;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

export function encodeSafetensors(tensors: SafetensorsTensor[], metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length)
      throw new Error(`tensor ${t.name}: shape ${t.shape} does not match ${t.data.length} values`);
    const dtype = t.dtype ?? "F32";
    const size = count * bytesPerValue[dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    const dtype = t.dtype ?? "F32";
    if (dtype === "F32") {
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, at);
    } else {
      const toBits = dtype === "F16" ? float32ToFloat16Bits : float32ToBfloat16Bits;
      for (let i = 0; i < t.data.length; i++) out.writeUInt16LE(toBits(t.data[i]!), at + 2 * i);
    }
    at += t.data.length * bytesPerValue[dtype];
  }
  return out;
}

export async function writeSafetensors(
  path: string,
  tensors: SafetensorsTensor[],
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFile(path, encodeSafetensors(tensors, metadata));
}

export function decodeSafetensors(bytes: Buffer, path = "(buffer)"): SafetensorsContent {
  const fail = (why: string) => new ConfigError(`not a valid safetensors file: ${why}`, { path });
  if (bytes.length < 8) throw fail("shorter than 8 bytes");
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (8 + headerLength > bytes.length) throw fail(`header length ${headerLength} runs past the end of the file`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<string, unknown>;
  } catch (error) {
    throw fail(`header is not JSON (${(error as Error).message})`);
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const {
      dtype,
      shape,
      data_offsets: offsets,
    } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!(safetensorsDtypes as readonly string[]).includes(dtype))
      throw fail(`tensor ${name} has dtype ${dtype}; expected one of ${safetensorsDtypes.join(", ")}`);
    const size = bytesPerValue[dtype as SafetensorsDtype];
    const count = shape.reduce((a, b) => a * b, 1);
    if (offsets[1] - offsets[0] !== count * size || dataStart + offsets[1] > bytes.length) {
      throw fail(`tensor ${name}: data_offsets ${JSON.stringify(offsets)} do not match shape ${JSON.stringify(shape)}`);
    }
    const data = new Float32Array(count);
    const start = dataStart + offsets[0];
    if (dtype === "F32") {
      Buffer.from(data.buffer).set(bytes.subarray(start, dataStart + offsets[1]));
    } else {
      const fromBits = dtype === "F16" ? float16BitsToFloat32 : bfloat16BitsToFloat32;
      for (let i = 0; i < count; i++) data[i] = fromBits(bytes.readUInt16LE(start + 2 * i));
    }
    tensors.set(name, { shape, data });
  }
  return { metadata, tensors };
}

export async function readSafetensors(path: string): Promise<SafetensorsContent> {
  return decodeSafetensors(await readFile(path), path);
}
