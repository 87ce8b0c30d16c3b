import type { Command } from "commander";
import { writeReport } from "../../report/index.js";

export function registerReport(program: Command): void {
  program
    .command("report")
    .description(
      "Write one self-contained HTML report of a run: funnel, principle usage, red-team coverage, diversity, lengths, loss, evaluations, and a record browser.",
    )
    .argument("<run>", "run directory")
    .option("--out <file>", "output HTML file (default: <run>/report.html)")
    .action(async (runDir: string, options: { out?: string }) => {
      const result = await writeReport({ runDir, ...(options.out ? { out: options.out } : {}) });
      process.stdout.write(`wrote ${result.path} (${(result.bytes / 1e6).toFixed(2)} MB, ${result.records} records)\n`);
    });
}
