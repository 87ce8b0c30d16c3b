import { BackendError } from "./backend-error.js";
import type { SelfalignErrorFields } from "./selfalign-error.js";

/**
 * A request cannot fit in the model's context: the prompt alone is too long, or the prompt plus the tokens asked
 * for (when the caller asked to be refused rather than capped). Never retryable: the same request never fits.
 */
export class ContextLengthError extends BackendError {
  /** Prompt tokens of the request. */
  readonly promptTokens: number;
  /** Tokens the request asked to generate, when that is what does not fit. */
  readonly maxTokens?: number;
  /** Tokens one sequence holds. */
  readonly contextSize: number;

  constructor(
    message: string,
    details: { promptTokens: number; maxTokens?: number; contextSize: number },
    fields: Omit<SelfalignErrorFields, "retryable"> = {},
  ) {
    super(message, { ...fields, retryable: false });
    this.promptTokens = details.promptTokens;
    this.maxTokens = details.maxTokens;
    this.contextSize = details.contextSize;
  }
}
