/** The public API of selfalign: an explicit list of exports. */
export * from "./backends/language-model.js";
export * from "./constitution/index.js";
export * from "./errors/index.js";
export * from "./gguf/index.js";
export type { ProgressEvent, ProgressListener } from "./progress/progress-event.js";
