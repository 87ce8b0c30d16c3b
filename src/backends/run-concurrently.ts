import { setMaxListeners } from "node:events";

/**
 * Run `task(0..count-1)` with at most `limit` in flight, yielding results as they finish (how both backends'
 * `complete` streams). The first failure aborts the rest and is thrown; a consumer that stops early aborts what is
 * still running. Either way the generator returns only once every started task has settled, so nothing still uses
 * the backend's engine or connections after it.
 */
export async function* runConcurrently<T>(
  count: number,
  limit: number,
  outerSignal: AbortSignal | undefined,
  task: (index: number, signal: AbortSignal) => Promise<T>,
): AsyncGenerator<T> {
  const controller = new AbortController();
  const signal = outerSignal ? AbortSignal.any([outerSignal, controller.signal]) : controller.signal;
  // Every task (and every sample waiting for an engine slot) listens on this signal: many listeners are expected.
  setMaxListeners(0, signal);
  const done: T[] = [];
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  let next = 0;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const launch = () => {
    while (!failure && !controller.signal.aborted && running.size < limit && next < count) {
      const index = next++;
      const run: Promise<void> = task(index, signal).then(
        (value) => {
          running.delete(run);
          done.push(value);
          launch();
          notify();
        },
        (error: unknown) => {
          running.delete(run);
          failure ??= { error };
          controller.abort();
          notify();
        },
      );
      running.add(run);
    }
  };
  try {
    launch();
    let yielded = 0;
    while (yielded < count) {
      if (failure) throw failure.error;
      if (done.length > 0) {
        yielded++;
        yield done.shift() as T;
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    controller.abort();
    await Promise.allSettled([...running]);
  }
}
