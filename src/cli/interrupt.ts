/**
 * Ctrl+C for long commands: the first SIGINT/SIGTERM aborts the work's AbortSignal (finished records are kept and
 * the run stays resumable); a second one exits at once with status 130.
 */
import { AbortedError } from "../errors/index.js";

/** The process methods used (a fake EventEmitter in tests). */
export interface InterruptibleProcess {
  on(event: "SIGINT" | "SIGTERM", listener: () => void): unknown;
  off(event: "SIGINT" | "SIGTERM", listener: () => void): unknown;
  exit(code: number): unknown;
}

export interface WithInterruptOptions {
  /** Where the notice is written. Default process.stderr. */
  stderr?: { write(text: string): unknown };
  /** Default the real process. */
  process?: InterruptibleProcess;
  /** Called on the first signal before the notice is printed, e.g. to finish a live progress line. */
  onInterrupt?: () => void;
}

export const stoppingNotice = "stopping... (press Ctrl+C again to force)";

export async function withInterrupt<T>(
  fn: (signal: AbortSignal) => Promise<T>,
  options: WithInterruptOptions = {},
): Promise<T> {
  const proc: InterruptibleProcess = options.process ?? process;
  const stderr = options.stderr ?? process.stderr;
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) {
      stderr.write("stopped without waiting; the records written so far are kept\n");
      proc.exit(130);
      return;
    }
    options.onInterrupt?.();
    stderr.write(`\n${stoppingNotice}\n`);
    controller.abort(new AbortedError());
  };
  proc.on("SIGINT", onSignal);
  proc.on("SIGTERM", onSignal);
  try {
    return await fn(controller.signal);
  } finally {
    proc.off("SIGINT", onSignal);
    proc.off("SIGTERM", onSignal);
  }
}
