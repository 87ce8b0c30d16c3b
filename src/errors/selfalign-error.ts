/** Structured fields every selfalign error may carry; the CLI prints `message` without a stack. */
export interface SelfalignErrorFields {
  /** File the problem is in. */
  path?: string;
  /** 1-based line in `path`. */
  line?: number;
  /** Field (dotted path) the problem is in. */
  field?: string;
  /** Record id the problem concerns. */
  recordId?: string;
  /** HTTP status of a failed request. */
  statusCode?: number;
  /** Whether retrying the same operation may succeed. */
  retryable?: boolean;
  cause?: unknown;
}

/** Base class of every known error: the message says what was expected, what arrived and how to fix it. */
export class SelfalignError extends Error {
  readonly path?: string;
  readonly line?: number;
  readonly field?: string;
  readonly recordId?: string;
  readonly statusCode?: number;
  readonly retryable: boolean;

  constructor(message: string, fields: SelfalignErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = new.target.name;
    this.path = fields.path;
    this.line = fields.line;
    this.field = fields.field;
    this.recordId = fields.recordId;
    this.statusCode = fields.statusCode;
    this.retryable = fields.retryable ?? false;
  }
}

export function isSelfalignError(error: unknown): error is SelfalignError {
  return error instanceof SelfalignError;
}
