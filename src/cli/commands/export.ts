import type { Command } from "commander";
import { ConfigError } from "../../errors/index.js";

// The export module (and the Parquet writer) is loaded when the command runs, not at start-up.
const exportFormats = ["parquet"] as const;

/** `selfalign export <run> --stage <name>`: a stage's kept records as Parquet with a dataset card. */
export function registerExport(program: Command): void {
  program
    .command("export")
    .description(
      "Write a stage's kept records as a dataset folder for a hub: records.parquet and a dataset card (README.md).",
    )
    .argument("<run>", "run directory")
    .requiredOption("--stage <name>", "stage folder to export (e.g. self-instruct, red-team, self-align)")
    .option("--format <format>", `output format: ${exportFormats.join(", ")}`, "parquet")
    .option("--out <dir>", "folder to write (default: <run>/exports/<stage>)")
    .action(async (run: string, options: { stage: string; format: string; out?: string }) => {
      if (!(exportFormats as readonly string[]).includes(options.format)) {
        throw new ConfigError(`--format must be one of ${exportFormats.join(", ")}, got "${options.format}"`, {
          field: "format",
        });
      }
      const format = options.format;
      const command = [
        "selfalign export",
        run,
        `--stage ${options.stage}`,
        `--format ${format}`,
        ...(options.out ? [`--out ${options.out}`] : []),
      ].join(" ");
      const { exportStage } = await import("../../data/export-stage.js");
      const result = await exportStage(run, options.stage, { ...(options.out ? { out: options.out } : {}), command });
      process.stdout.write(`wrote ${result.records} records to ${result.parquet}, card ${result.card}\n`);
    });
}
