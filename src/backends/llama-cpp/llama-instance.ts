import { getLlama, type Llama, LlamaLogLevel } from "node-llama-cpp";
import type { ProgressListener } from "../../progress/progress-event.js";

const instances = new Map<string, Promise<Llama>>();

/**
 * llama.cpp warnings that describe intended use, not a problem: an embeddings context without pooling (reward
 * inference, training/reward/reward-model.ts) outputs every token, and llama.cpp says so on every decode.
 */
const expectedWarnings = [/embeddings required but some input tokens were not marked as outputs/];
const listeners = new Set<ProgressListener>();

/**
 * One llama.cpp binding per GPU setting, shared by every backend in the process (loading the binding twice
 * wastes memory and time). llama.cpp's own warnings go to the listeners of live backends, never to the console.
 */
export function getSharedLlama(gpu: boolean | "auto"): Promise<Llama> {
  const key = String(gpu);
  let instance = instances.get(key);
  if (!instance) {
    instance = getLlama({
      gpu: gpu === true ? "auto" : gpu,
      build: "never",
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        if (level !== LlamaLogLevel.warn && level !== LlamaLogLevel.error) return;
        const text = message.trim();
        if (!text || expectedWarnings.some((pattern) => pattern.test(text))) return;
        for (const listener of listeners) listener({ type: "message", level: "warn", text: `llama.cpp: ${text}` });
      },
    });
    instance.catch(() => instances.delete(key));
    instances.set(key, instance);
  }
  return instance;
}

/** Subscribe a backend's progress listener to llama.cpp log warnings; returns the unsubscribe function. */
export function subscribeLlamaLogs(listener: ProgressListener | undefined): () => void {
  if (!listener) return () => {};
  listeners.add(listener);
  return () => listeners.delete(listener);
}
