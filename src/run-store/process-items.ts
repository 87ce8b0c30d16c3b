/**
 * The resumable work loop every stage uses: skip finished inputs, run the rest with bounded concurrency, append
 * each result the moment it finishes, and on Ctrl+C keep what finished and stop with AbortedError.
 */
import { AbortedError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import type { RejectedRecord, StoreRecord } from "./jsonl.js";
import { inShard } from "./shard.js";
import type { StageStore } from "./stage-store.js";

/** What processing one input produced: a kept record or a rejected one (with filter and reason). */
export type ItemResult<R extends StoreRecord = StoreRecord> = { kept: R } | { rejected: RejectedRecord<R> };

export interface ProcessItemsOptions<I extends { id: string }, R extends StoreRecord = StoreRecord> {
  /** All inputs of the stage; those outside the store's shard and those already done are skipped. */
  items: Iterable<I>;
  /** Inputs processed at once. Default 1. */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /**
   * Process one input. Return one result, several, or `[]`. Output ids should be deterministic; an output whose id
   * is already stored is not written again. `signal` aborts on Ctrl+C or when another input failed.
   */
  process: (item: I, signal: AbortSignal) => Promise<ItemResult<R> | ItemResult<R>[]>;
  /** Save the manifest at most this often while working, in milliseconds. Default 2000. */
  manifestIntervalMs?: number;
}

export interface ProcessItemsResult {
  /** Inputs in this shard. */
  total: number;
  /** Inputs skipped because they were done before. */
  skipped: number;
  /** Inputs processed now. */
  processed: number;
  /** Records kept / rejected now. */
  kept: number;
  rejected: number;
}

export async function processItems<I extends { id: string }, R extends StoreRecord>(
  store: StageStore,
  options: ProcessItemsOptions<I, R>,
): Promise<ProcessItemsResult> {
  const { onProgress, signal } = options;
  const stage = store.stage;
  // An input listed twice is processed once.
  const seen = new Set<string>();
  const mine = [...options.items].filter(
    (item) => inShard(item.id, store.shard) && !seen.has(item.id) && Boolean(seen.add(item.id)),
  );
  const pending = mine.filter((item) => !store.isDone(item.id));
  const result: ProcessItemsResult = {
    total: mine.length,
    skipped: mine.length - pending.length,
    processed: 0,
    kept: 0,
    rejected: 0,
  };
  for (const text of store.warnings) onProgress?.({ type: "message", level: "warn", text });
  if (signal?.aborted) throw new AbortedError();
  onProgress?.({ type: "stage-start", stage, total: result.total, done: result.skipped });

  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const interval = options.manifestIntervalMs ?? 2000;
  let lastSave = Date.now();
  let failure: { error: unknown } | undefined;
  let next = 0;

  const finish = async (item: I, output: ItemResult<R> | ItemResult<R>[]) => {
    const outputs = Array.isArray(output) ? output : [output];
    let kept = 0;
    let reason: string | undefined;
    for (const one of outputs) {
      if ("kept" in one) {
        if (await store.appendRecord(one.kept)) result.kept++;
        kept++;
      } else {
        if (await store.appendRejected(one.rejected)) result.rejected++;
        reason ??= `${one.rejected.filter}: ${one.rejected.reason}`;
      }
    }
    // A single output carrying the input's id marks it done by itself; otherwise record the input explicitly. An
    // input whose every output is a retryable rejection (`retryOf`) stays unfinished: the next run tries it again.
    const first = outputs[0];
    const selfMarked =
      outputs.length === 1 && first !== undefined && ("kept" in first ? first.kept : first.rejected).id === item.id;
    const retryable =
      outputs.length > 0 && outputs.every((one) => "rejected" in one && one.rejected.retryOf === item.id);
    if (!selfMarked && !retryable) await store.markDone(item.id);
    result.processed++;
    onProgress?.({
      type: "record-end",
      stage,
      done: result.skipped + result.processed,
      total: result.total,
      ...(outputs.length > 0 ? { kept: kept > 0 } : {}),
      ...(kept === 0 && reason !== undefined ? { reason } : {}),
      records: { kept: store.manifest.counts.kept, rejected: store.manifest.counts.rejected },
    });
    if (Date.now() - lastSave >= interval) {
      lastSave = Date.now();
      await store.saveManifest();
    }
  };

  const worker = async () => {
    while (next < pending.length && !stop.signal.aborted) {
      const item = pending[next++]!;
      let output: ItemResult<R> | ItemResult<R>[];
      try {
        output = await options.process(item, stop.signal);
      } catch (error) {
        // Errors after a stop are the in-flight work being cancelled; the first other error is the failure.
        if (!stop.signal.aborted) {
          failure = { error };
          stop.abort(error);
        }
        continue;
      }
      try {
        await finish(item, output);
      } catch (error) {
        failure ??= { error };
        stop.abort(error);
      }
    }
  };

  const workers = Math.max(1, Math.min(options.concurrency ?? 1, pending.length));
  try {
    await Promise.all(Array.from({ length: workers }, worker));
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await store.saveManifest();
  }
  if (failure) throw failure.error;
  if (signal?.aborted && result.processed < pending.length) {
    onProgress?.({
      type: "message",
      level: "warn",
      text: `${store.label}: stopped after ${result.skipped + result.processed} of ${result.total}; run the same command again to resume`,
    });
    throw new AbortedError();
  }
  onProgress?.({
    type: "stage-end",
    stage,
    done: result.skipped + result.processed,
    kept: store.manifest.counts.kept,
    rejected: store.manifest.counts.rejected,
  });
  return result;
}
