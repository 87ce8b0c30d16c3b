/**
 * The few WebAssembly JS API types the kernels use. The project compiles without the DOM lib, and @types/node
 * declares only the WebAssembly namespace, not its classes, so they are typed here.
 */
export interface WasmModule {
  readonly __brand?: "WebAssembly.Module";
}

export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => { exports: unknown };
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}

export const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
