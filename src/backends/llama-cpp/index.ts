/** The embedded backend: node-llama-cpp in-process (parallel sequences, KV-cache prefix reuse, exact scoring, LoRA). */
export { createLlamaCppBackend, LlamaCppBackend, type LlamaCppBackendOptions } from "./llama-cpp-backend.js";
export { type EngineSpeed, type MeasureEngineSpeedOptions, measureEngineSpeed } from "./measure-speed.js";
