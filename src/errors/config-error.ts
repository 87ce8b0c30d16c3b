import { SelfalignError, type SelfalignErrorFields } from "./selfalign-error.js";

/** A configuration, constitution or data file is invalid. Always names the file, and line/field where known. */
export class ConfigError extends SelfalignError {
  constructor(message: string, fields: SelfalignErrorFields = {}) {
    const where = [fields.path, fields.line === undefined ? undefined : `line ${fields.line}`, fields.field]
      .filter((part) => part !== undefined)
      .join(", ");
    super(where && !message.startsWith(fields.path ?? "\0") ? `${where}: ${message}` : message, fields);
  }
}
