/** Long commands: a progress renderer for the work's events, Ctrl+C as an abort signal, the renderer closed after. */
import type { ProgressListener } from "../progress/progress-event.js";
import { withInterrupt } from "./interrupt.js";
import { createProgressRenderer } from "./progress-renderer.js";

export async function withProgress<T>(
  work: (onProgress: ProgressListener, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const renderer = createProgressRenderer();
  try {
    return await withInterrupt((signal) => work(renderer.onProgress, signal), { onInterrupt: () => renderer.close() });
  } finally {
    renderer.close();
  }
}
