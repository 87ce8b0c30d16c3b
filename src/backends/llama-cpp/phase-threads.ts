import type { LlamaContext } from "node-llama-cpp";

/** Batches with at least this many tokens count as prompt evaluation (a decode step of 16 parallel sequences is
 * still faster on 1 thread, engine-notes 3e) and get `batchThreads`. */
const promptBatchThreshold = 64;

interface NativeContext {
  initBatch(size: number): unknown;
  setThreads(threads: number): unknown;
  decodeBatch(): Promise<unknown>;
}

/**
 * Use `decodeThreads` for small decode batches and `batchThreads` for long prompt evaluation in one context.
 * On a small VM every multi-threaded decode call pays a fixed synchronisation cost (about 12 ms with 2 threads,
 * engine-notes 3e), so generation wants 1 thread while prompt evaluation is 1.7x faster with 2.
 * node-llama-cpp sets one thread count per context; this wraps its (internal) native context to choose per batch.
 * If the internals are not as expected, the context keeps node-llama-cpp's own thread choice.
 */
export function usePhaseThreads(context: LlamaContext, decodeThreads: number, batchThreads: number): boolean {
  const native = (context as unknown as { _ctx?: Partial<NativeContext> })._ctx;
  if (
    !native ||
    typeof native.initBatch !== "function" ||
    typeof native.setThreads !== "function" ||
    typeof native.decodeBatch !== "function"
  )
    return false;
  const initBatch = native.initBatch.bind(native);
  const setThreads = native.setThreads.bind(native);
  const decodeBatch = native.decodeBatch.bind(native);
  let batchTokens = 0;
  let current = -1;
  // The addon's methods are read-only inherited properties: shadow them with own properties on this instance.
  const define = (name: keyof NativeContext, value: unknown) =>
    Object.defineProperty(native, name, { value, configurable: true, writable: true });
  try {
    define("initBatch", (size: number) => {
      batchTokens = size;
      return initBatch(size);
    });
    define("setThreads", () => undefined);
    define("decodeBatch", () => {
      const threads = batchTokens >= promptBatchThreshold ? batchThreads : decodeThreads;
      if (threads !== current) {
        setThreads(threads);
        current = threads;
      }
      return decodeBatch();
    });
  } catch {
    for (const name of ["initBatch", "setThreads", "decodeBatch"] as const)
      delete (native as Record<string, unknown>)[name];
    return false;
  }
  return true;
}
