import type { LanguageModel } from "../../backends/language-model.js";
import { CapabilityError } from "../../errors/index.js";

/** Multiple-choice tasks need exact log-probabilities; fail before any work when the backend has none. */
export function requireScore(model: LanguageModel, task: string): void {
  if (!model.capabilities().score) {
    throw new CapabilityError(
      `${task} ranks answers by log-probability, but backend ${model.id} cannot score text (no logprobs; a ` +
        "chat-only server?). Use the embedded backend (llama-cpp:<model.gguf>) or an OpenAI-compatible server whose " +
        "completions API returns prompt logprobs (vLLM, llama.cpp server, `selfalign serve`).",
    );
  }
}
