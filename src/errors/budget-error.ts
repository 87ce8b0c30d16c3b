import { SelfalignError } from "./selfalign-error.js";

/**
 * A run reached its configured budget (`budget.tokens` or `budget.cost`) and stopped between requests. What finished is
 * saved; the same command with a larger budget resumes without repeating paid requests. `selfalign` exits with 3.
 */
export class BudgetReachedError extends SelfalignError {}

/** The exit status of `selfalign run` stopped by its budget. */
export const budgetExitCode = 3;
