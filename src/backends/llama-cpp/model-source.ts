import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import { resolveModelFile } from "node-llama-cpp";
import { AbortedError, BackendError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { readEnv } from "../../config/env.js";

/** Whether `model` names a remote file (`hf:` URI or http(s) URL) rather than a local path. */
export function isRemoteModelUri(model: string): boolean {
  return /^(hf:|huggingface:|https?:\/\/)/i.test(model);
}

/** The origin a remote model is fetched from (node-llama-cpp resolves `hf:` URIs against huggingface.co). */
function remoteOrigin(model: string): string {
  if (/^https?:\/\//i.test(model)) return new URL(model).origin;
  return "https://huggingface.co";
}

export interface ResolveModelSourceOptions {
  /** Where remote models are downloaded. Default: `models/` under SELFALIGN_CACHE_DIR (~/.cache/selfalign). */
  cacheDir?: string;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /** Give up when a download makes no progress for this long. Default 20 s. */
  stallTimeoutMs?: number;
  /** Download a remote model that is not cached yet. Default true; false only looks in the cache. */
  download?: boolean;
}

/**
 * Resolve a GGUF path or an `hf:` URI to a local file. A missing local file is a ConfigError naming it; a remote
 * model that cannot be fetched (offline, unreachable, unknown repository) is one BackendError saying how to supply
 * the file instead. node-llama-cpp does not always honour its abort signal while it looks a model up, so the
 * stall timeout is enforced here.
 */
export async function resolveModelSource(model: string, options: ResolveModelSourceOptions = {}): Promise<string> {
  if (!isRemoteModelUri(model)) {
    const path = resolve(model);
    try {
      await access(path);
    } catch {
      throw new ConfigError(
        `model file not found: expected a GGUF file at ${path}. Pass an existing path (--model ./path/model.gguf) or an hf: URI (hf:owner/repo/file.gguf).`,
        { path, field: "model" },
      );
    }
    return path;
  }
  const env = readEnv();
  const cacheDir = options.cacheDir ?? join(env.cacheDir, "models");
  const stallTimeoutMs = options.stallTimeoutMs ?? 20_000;
  // A file downloaded earlier needs no network; the miss message names the file expected there.
  let expected = "";
  const cached = await resolveModelFile(model, { directory: cacheDir, cli: false, download: false }).catch(
    (error: unknown) => {
      const found = /No model file found at "([^"]+)"/.exec(error instanceof Error ? error.message : "");
      if (found?.[1]) expected = ` as ${found[1]}`;
      return undefined;
    },
  );
  if (cached) return cached;
  if (options.download === false)
    throw new ConfigError(
      `model "${model}" is not in the cache (${cacheDir}) and this command does not download. Run a command that downloads it (selfalign run, serve) on a machine with internet access, place the GGUF${expected || ` in ${cacheDir}`}, or pass a local path.`,
      { path: cacheDir, field: "model" },
    );
  const downloadError = (reason: string, cause: unknown) =>
    new BackendError(
      `could not download model "${model}" into ${cacheDir}: ${reason}. This machine may be offline or the host unreachable. ` +
        "Supply a local file instead (--model ./path/model.gguf), or download the GGUF beforehand on a machine with internet " +
        `access and place it${expected || ` in ${cacheDir}`}.`,
      { cause, retryable: true, field: "model" },
    );
  if (env.offline)
    throw downloadError("SELFALIGN_OFFLINE (or HF_HUB_OFFLINE) is set, so nothing is downloaded", undefined);
  // Fail fast when the host cannot be reached at all: node-llama-cpp's downloader retries for minutes and keeps
  // the process alive even after its signal is aborted.
  const host = remoteOrigin(model);
  try {
    await fetch(host, { method: "HEAD", signal: AbortSignal.timeout(Math.min(stallTimeoutMs, 10_000)) });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause;
    throw downloadError(
      `${host} is unreachable (${cause?.message ?? (error instanceof Error ? error.message : String(error))})`,
      error,
    );
  }
  const controller = new AbortController();
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  let rejectStall: (error: Error) => void = () => {};
  const stalled = new Promise<never>((_, reject) => {
    rejectStall = reject;
  });
  const armTimer = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      controller.abort();
      rejectStall(new Error(`no response for ${Math.round(stallTimeoutMs / 1000)} s`));
    }, stallTimeoutMs);
    timer.unref?.();
  };
  armTimer();
  const aborted = new Promise<never>((_, reject) => {
    if (options.signal?.aborted) reject(new AbortedError());
    options.signal?.addEventListener("abort", () => reject(new AbortedError()), { once: true });
  });
  try {
    const download = resolveModelFile(model, {
      directory: cacheDir,
      cli: false,
      signal: controller.signal,
      onProgress: ({ totalSize, downloadedSize }) => {
        armTimer();
        options.onProgress?.({
          type: "download-progress",
          file: model,
          downloadedBytes: downloadedSize,
          totalBytes: totalSize,
        });
      },
    });
    // The losing promise may reject later; keep that from surfacing as an unhandled rejection.
    download.catch(() => {});
    return await Promise.race([download, stalled, aborted]);
  } catch (error) {
    if (error instanceof AbortedError) throw error;
    throw downloadError(
      error instanceof Error ? (error.message.split("\n")[0] ?? error.message) : String(error),
      error,
    );
  } finally {
    if (timer) clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}
