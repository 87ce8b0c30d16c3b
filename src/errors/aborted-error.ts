import { SelfalignError } from "./selfalign-error.js";

/** Work was interrupted (Ctrl+C / AbortSignal). What finished is kept; the run can be resumed. */
export class AbortedError extends SelfalignError {
  constructor(message = "Interrupted. What finished is saved; run the same command again to resume.") {
    super(message);
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError();
}
