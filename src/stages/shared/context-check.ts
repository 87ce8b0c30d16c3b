/** The context-window check every stage makes before sending a prompt: reject, never truncate (method-spec A.11.9). */
import type { LanguageModel } from "../../backends/language-model.js";
import { recordId } from "../../run-store/record-id.js";

export interface ContextOverflow {
  filter: "context-overflow";
  reason: string;
  promptTokens: number;
  /** The context the prompt did not fit. */
  maxContext: number;
}

/**
 * Undefined when `prompt` plus `maxTokens` new tokens fits the backend's context window; otherwise the rejection
 * to record (the reference silently dropped lines from the end of long prompts instead).
 */
export async function checkContext(
  backend: LanguageModel,
  prompt: string,
  maxTokens: number,
): Promise<ContextOverflow | undefined> {
  const maxContext = backend.capabilities().maxContext;
  if (!(maxContext > 0)) return undefined;
  const promptTokens = await backend.countTokens(prompt);
  if (promptTokens + maxTokens <= maxContext) return undefined;
  return {
    filter: "context-overflow",
    promptTokens,
    maxContext,
    reason: `prompt has ${promptTokens} tokens; with ${maxTokens} new tokens it needs ${promptTokens + maxTokens}, more than the ${maxContext}-token context (raise the context size or lower maxTokens)`,
  };
}

/**
 * The fields of a context-overflow rejection of input `inputId` (or of output `outputId` of that input): an id of
 * its own per context size, and `retryOf`, so the input stays unfinished and is tried again when the stage runs with
 * a larger context (the rejection is then no longer counted).
 */
export function overflowRejection(
  inputId: string,
  overflow: ContextOverflow,
  outputId: string = inputId,
): ContextOverflow & { id: string; retryOf: string } {
  return { ...overflow, id: recordId("context-overflow", outputId, overflow.maxContext), retryOf: inputId };
}
