/** GGUF v3 value and tensor types (see ggml/include/gguf.h and ggml.h). */
export const ggufValueTypes = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof ggufValueTypes, "array">;

/** A typed metadata value. Arrays hold scalars of one type. */
export type GgufValue =
  | { type: "string"; value: string }
  | { type: "bool"; value: boolean }
  | { type: "u64" | "i64"; value: bigint }
  | { type: Exclude<GgufScalarType, "string" | "bool" | "u64" | "i64">; value: number }
  | { type: "array"; itemType: GgufScalarType; value: Array<string | number | boolean | bigint> };

/** ggml tensor types this project reads (dequantising to F32; F32/F16 are also written from floats). */
export const ggmlTypes = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  BF16: 30,
} as const;
export type GgmlTypeName = keyof typeof ggmlTypes;

export function ggmlTypeName(id: number): GgmlTypeName | undefined {
  return (Object.keys(ggmlTypes) as GgmlTypeName[]).find((name) => ggmlTypes[name] === id);
}

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne[0] is the fastest-varying (input) dimension. */
  dims: number[];
  /** ggml type id (may be one this project cannot decode; see ggmlTypeName). */
  type: number;
  /** Byte offset relative to the start of the data section. */
  offset: number;
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Convenience constructors for typed metadata values. */
export const gguf = {
  string: (value: string): GgufValue => ({ type: "string", value }),
  u32: (value: number): GgufValue => ({ type: "u32", value }),
  i32: (value: number): GgufValue => ({ type: "i32", value }),
  f32: (value: number): GgufValue => ({ type: "f32", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  u64: (value: bigint): GgufValue => ({ type: "u64", value }),
  array: (itemType: GgufScalarType, value: Array<string | number | boolean | bigint>): GgufValue => ({
    type: "array",
    itemType,
    value,
  }),
};

export function tensorElementCount(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}
