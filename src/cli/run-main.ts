import { budgetExitCode, isSelfalignError } from "../errors/index.js";

/**
 * Run the CLI: known errors print one clear message (no stack) and exit 1 (130 when interrupted, 3 when a run's budget
 * stopped it); unknown errors print the stack and exit 2.
 */
export async function runMain(main: () => Promise<unknown>): Promise<void> {
  try {
    await main();
  } catch (error) {
    if (isSelfalignError(error)) {
      process.stderr.write(`selfalign: ${error.message}\n`);
      process.exitCode = error.name === "AbortedError" ? 130 : error.name === "BudgetReachedError" ? budgetExitCode : 1;
      return;
    }
    if (error && typeof error === "object" && "code" in error && String(error.code).startsWith("commander.")) {
      process.exitCode = (error as { exitCode?: number }).exitCode ?? 1;
      return;
    }
    process.stderr.write(
      `selfalign: unexpected error (please report it):\n${(error as Error)?.stack ?? String(error)}\n`,
    );
    process.exitCode = 2;
  }
}
