export { AbortedError, throwIfAborted } from "./aborted-error.js";
export { BudgetReachedError, budgetExitCode } from "./budget-error.js";
export { BackendError, CapabilityError } from "./backend-error.js";
export { ConfigError } from "./config-error.js";
export { ContextLengthError } from "./context-length-error.js";
export { isSelfalignError, SelfalignError, type SelfalignErrorFields } from "./selfalign-error.js";
