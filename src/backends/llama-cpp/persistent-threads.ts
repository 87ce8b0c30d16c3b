/**
 * A persistent ggml threadpool for the engine's llama.cpp contexts, through the optional native addon
 * `native/threadpool` (built by `node scripts/build-native.mjs` against node-llama-cpp's own headers and the llama.cpp
 * headers of its source bundle).
 *
 * node-llama-cpp attaches no threadpool, so each multi-threaded llama_decode call starts and joins its worker threads:
 * on this 2-core machine a 4-token decode step of a 57M model took 19.4 ms on 2 threads and 16.4 ms on 1, and one
 * token 13.6 ms against 6.5 ms. With one pool kept for the engine's life (as llama.cpp's own server and CLI do), the
 * same steps take 10.3 ms and 5.4 ms, and more threads pay at every batch size. Where the addon did not build or the
 * loaded node-llama-cpp is not laid out as its headers say, nothing is attached and decoding runs as before.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { LlamaContext } from "node-llama-cpp";
import { packageRoot } from "../../package-root.js";

interface ThreadpoolAddon {
  createPool(threads: number, poll?: number): unknown;
  attach(pool: unknown, nativeContext: unknown, contextSize: number, sequences: number, batchSize: number): void;
  release(pool: unknown): void;
}

type AddonLoad = { addon: ThreadpoolAddon } | { addon: undefined; reason: string };
let loaded: AddonLoad | undefined;

/** Where the addon is loaded from. */
export function threadpoolAddonPath(): string {
  return join(packageRoot(), "native", "threadpool", "build", "Release", "threadpool.node");
}

/** The addon, loaded once, or why it cannot be used. Never throws. */
export function loadThreadpoolAddon(): AddonLoad {
  loaded ??= (() => {
    const path = threadpoolAddonPath();
    if (!existsSync(path))
      return { addon: undefined, reason: `${path} is missing (run \`node scripts/build-native.mjs\`)` };
    try {
      const addon = createRequire(import.meta.url)(path) as ThreadpoolAddon;
      if (typeof addon.createPool !== "function") throw new Error("it exports no createPool function");
      return { addon };
    } catch (error) {
      return { addon: undefined, reason: `${path} failed to load: ${(error as Error).message}` };
    }
  })();
  return loaded;
}

/** node-llama-cpp's native context object behind a LlamaContext (what the addon unwraps), with what it checks. */
function nativeOf(context: LlamaContext): { native: { getContextSize(): number }; batchSize: number } | undefined {
  const native = (context as unknown as { _ctx?: { getContextSize?: () => number } })._ctx;
  if (!native || typeof native.getContextSize !== "function") return undefined;
  return { native: native as { getContextSize(): number }, batchSize: context.batchSize };
}

/**
 * One threadpool shared by the contexts of an engine, whose decode calls never overlap (they go through one
 * DecodeGate). `release()` must run when no decode is in flight, and before the contexts are disposed.
 */
export class PersistentThreads {
  private released = false;

  private constructor(
    private readonly addon: ThreadpoolAddon,
    private readonly pool: unknown,
    /** Threads in the pool (the decoding thread included): the most a decode call can use. */
    readonly threads: number,
  ) {}

  /** A pool of `threads` threads, or why there is none (the addon is absent or refused). Never throws. */
  static create(
    threads: number,
    /** ggml's polling level: 0, idle workers sleep at once (ggml's default of 50 spins for the next graph, which on
     * 2 cores took CPU from the thread sampling between steps: 4 sequences 0-10% slower, 1 sequence 20% slower). */
    poll = 0,
  ): { threads: PersistentThreads } | { threads: undefined; reason: string } {
    const load = loadThreadpoolAddon();
    if (!load.addon) return { threads: undefined, reason: load.reason };
    try {
      return { threads: new PersistentThreads(load.addon, load.addon.createPool(threads, poll), threads) };
    } catch (error) {
      return { threads: undefined, reason: `no threadpool: ${(error as Error).message}` };
    }
  }

  /** Decode `context`'s batches on this pool. False (and nothing changed) when its native context cannot be read. */
  attach(context: LlamaContext): boolean {
    if (this.released) return false;
    const found = nativeOf(context);
    if (!found) return false;
    try {
      this.addon.attach(
        this.pool,
        found.native,
        found.native.getContextSize(),
        context.totalSequences,
        found.batchSize,
      );
      return true;
    } catch {
      return false;
    }
  }

  /** Detach from every context still alive and stop the threads. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.addon.release(this.pool);
  }
}
