/** `selfalign doctor <model>`: check a base model before a long run (see doctor/doctor.ts); exits 1 on a failure. */
import type { Command } from "commander";
import { defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { positiveInteger } from "../flags.js";

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description(
      "Check a base model before a long run: architecture, tokenizer, chat template, context per stage, trainer support. Reads the header and vocabulary only; never downloads.",
    )
    .argument("<model>", "GGUF file, or an hf: URI already in the cache")
    .option("--ctx <n>", "context size the run will use (default: min(trained context, 4096))", positiveInteger("ctx"))
    .option("--constitution <dir>", "constitution whose prompts to measure (default: the built-in one)")
    .action(async (model: string, options: { ctx?: number; constitution?: string }) => {
      // Loaded here: node-llama-cpp would slow every other command's start.
      const { formatDoctorReport, runDoctor } = await import("../../doctor/doctor.js");
      const constitution = await loadConstitution(options.constitution ?? defaultConstitutionDir());
      const report = await runDoctor({
        model,
        constitution,
        ...(options.ctx === undefined ? {} : { contextSize: options.ctx }),
      });
      process.stdout.write(formatDoctorReport(report));
      if (report.checks.some((check) => check.status === "fail")) process.exitCode = 1;
    });
}
