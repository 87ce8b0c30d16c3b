/**
 * Run `task(0..count-1)` with at most `limit` in flight, yielding results as they finish. The first failure aborts
 * the rest and is thrown; a consumer that stops early aborts what is still running.
 */
export async function* runConcurrently<T>(
  count: number,
  limit: number,
  outerSignal: AbortSignal | undefined,
  task: (index: number, signal: AbortSignal) => Promise<T>,
): AsyncGenerator<T> {
  const controller = new AbortController();
  const signal = outerSignal ? AbortSignal.any([outerSignal, controller.signal]) : controller.signal;
  const done: T[] = [];
  let failure: { error: unknown } | undefined;
  let next = 0;
  let running = 0;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const launch = () => {
    while (!failure && running < limit && next < count) {
      const index = next++;
      running++;
      task(index, signal).then(
        (value) => {
          running--;
          done.push(value);
          launch();
          notify();
        },
        (error: unknown) => {
          running--;
          failure ??= { error };
          controller.abort();
          notify();
        },
      );
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
  }
}
