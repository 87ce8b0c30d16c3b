import { open, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { resolveModelFile } from "node-llama-cpp";
import { readEnv } from "../../config/env.js";
import { AbortedError, BackendError, ConfigError } from "../../errors/index.js";
import { ggmlByteLength } from "../../gguf/dequantize.js";
import { readGgufHeader } from "../../gguf/gguf-reader.js";
import { ggmlTypeName, tensorElementCount } from "../../gguf/gguf-types.js";
import type { ProgressListener } from "../../progress/progress-event.js";

/** Whether `model` names a remote file (`hf:` URI or http(s) URL) rather than a local path. */
export function isRemoteModelUri(model: string): boolean {
  return /^(hf:|huggingface:|https?:\/\/)/i.test(model);
}

/** The origin a remote model is fetched from (node-llama-cpp resolves `hf:` URIs against huggingface.co). */
function remoteOrigin(model: string): string {
  if (/^https?:\/\//i.test(model)) return new URL(model).origin;
  return "https://huggingface.co";
}

/**
 * Where the model was named, so an error can say what to change: a command-line flag (default `--model`), or a field
 * of a config file (with its line when known).
 */
export type ModelSourceOrigin = { flag: string } | { file: string; line?: number; field: string };

/**
 * What is wrong with a local model file, as a phrase that starts with its path ("<path> is a directory"), or
 * undefined when it is a whole GGUF file: it exists, is a file, starts with the GGUF magic, has a readable header,
 * and is long enough for the tensors its header lists.
 */
export async function localModelProblem(path: string): Promise<string | undefined> {
  const info = await stat(path).catch(() => undefined);
  if (!info) return `${path} does not exist`;
  if (info.isDirectory()) return `${path} is a directory`;
  if (!info.isFile()) return `${path} is not a regular file`;
  const head = Buffer.alloc(4);
  const handle = await open(path, "r").catch(() => undefined);
  if (!handle) return `${path} cannot be read (check its permissions)`;
  const { bytesRead } = await handle.read(head, 0, 4, 0).finally(() => handle.close());
  if (bytesRead < 4 || head.toString("latin1") !== "GGUF") {
    const start = JSON.stringify(head.subarray(0, bytesRead).toString("latin1"));
    return `${path} starts with ${start} instead of the GGUF magic "GGUF"`;
  }
  let end: number;
  try {
    const header = await readGgufHeader(path);
    end = header.dataOffset;
    for (const tensor of header.tensors) {
      // Types this package cannot size (newer quantisations) are left to llama.cpp's own check.
      const type = ggmlTypeName(tensor.type);
      const bytes = type === undefined ? undefined : ggmlByteLength(type, tensorElementCount(tensor.dims));
      if (bytes !== undefined) end = Math.max(end, header.dataOffset + tensor.offset + bytes);
    }
  } catch {
    return `${path} has a damaged or incomplete GGUF header (download or convert it again)`;
  }
  if (info.size < end)
    return `${path} is truncated (its tensors end at byte ${end}, the file has ${info.size} bytes; download it again)`;
  return undefined;
}

/** How to fix a model reference, for the end of an error message. */
function fixHint(origin: ModelSourceOrigin): string {
  return "flag" in origin
    ? `pass an existing path (${origin.flag} ./path/model.gguf) or an hf: URI (hf:owner/repo/file.gguf)`
    : `set \`${origin.field}\` to the path of a local .gguf (relative to the config file) or an hf: URI (hf:owner/repo/file.gguf)`;
}

/** The fields that place an error at its origin: the config file, line and field; nothing for a flag. */
function originFields(origin: ModelSourceOrigin) {
  return "flag" in origin
    ? {}
    : { path: origin.file, ...(origin.line === undefined ? {} : { line: origin.line }), field: origin.field };
}

export interface ResolveModelSourceOptions {
  /** Where the model was named, for errors. Default: the `--model` flag. */
  origin?: ModelSourceOrigin;
  /** Where remote models are downloaded. Default: `models/` under SELFALIGN_CACHE_DIR (~/.cache/selfalign). */
  cacheDir?: string;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /** Give up when a download makes no progress for this long. Default 20 s. */
  stallTimeoutMs?: number;
}

/**
 * Resolve a GGUF path or an `hf:` URI to a local file. A local file that is missing, a directory, not a GGUF or
 * truncated is a ConfigError saying which and how to fix it, placed at `origin` (a config file's field and line, or
 * the flag); a remote model that cannot be fetched (offline, unreachable, unknown repository) is one error saying how
 * to supply the file instead. node-llama-cpp does not always honour its abort signal while it looks a model up, so
 * the stall timeout is enforced here.
 */
export async function resolveModelSource(model: string, options: ResolveModelSourceOptions = {}): Promise<string> {
  const origin = options.origin ?? { flag: "--model" };
  if (!isRemoteModelUri(model)) {
    const path = resolve(model);
    const problem = await localModelProblem(path);
    if (problem !== undefined) {
      throw new ConfigError(`${problem}: expected a GGUF model file; ${fixHint(origin)}`, {
        // With a flag, the message starts with the file's path, which is where the problem is.
        ...("flag" in origin ? { path } : originFields(origin)),
        ...("flag" in origin ? { field: "model" } : {}),
      });
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
  const supply =
    "flag" in origin
      ? `Supply a local file instead (${origin.flag} ./path/model.gguf)`
      : `Supply a local file instead (set \`${origin.field}\` to its path)`;
  const downloadError = (reason: string, cause: unknown) => {
    const message =
      `could not download model "${model}" into ${cacheDir}: ${reason}. This machine may be offline or the host unreachable. ` +
      `${supply}, or download the GGUF beforehand on a machine with internet access and place it${expected || ` in ${cacheDir}`}.`;
    // From a config file the error is the config's to fix: a ConfigError placed at the field.
    return "flag" in origin
      ? new BackendError(message, { cause, retryable: true, field: "model" })
      : new ConfigError(message, { ...originFields(origin), cause });
  };
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
