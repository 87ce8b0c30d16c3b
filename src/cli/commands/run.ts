import type { Command } from "commander";
import { formatNextCommands } from "../next-commands.js";
import { withProgress } from "../with-progress.js";

/** Print the end-of-run summary: counts, rejects by filter, tokens, adapters, report. */
export function formatPipelineSummary(result: import("../../pipeline/run-pipeline.js").RunPipelineResult): string {
  const lines = [
    result.alreadyFinished
      ? `Nothing to do: every stage of ${result.runDir} is already finished with this config.`
      : `Finished ${result.runDir}.`,
  ];
  const stopReasons = new Set<string>();
  for (const stage of result.stages) {
    if (stage.status === "stopped") {
      // One line for the rounds a group's early stop left out, with the reason.
      if (stage.summary && !stopReasons.has(stage.summary)) {
        stopReasons.add(stage.summary);
        lines.push(`  ${stage.stage.padEnd(18)} stopped    ${stage.summary}`);
      }
      continue;
    }
    const counts = stage.kept === undefined ? "" : `  kept ${stage.kept}, rejected ${stage.rejected}`;
    const filters = Object.entries(stage.byFilter ?? {})
      .sort((a, b) => b[1] - a[1])
      .map(([filter, count]) => `${filter} ${count}`)
      .join(", ");
    lines.push(`  ${stage.stage.padEnd(18)} ${stage.status.padEnd(10)}${counts}${filters ? ` (${filters})` : ""}`);
    if (stage.movedAside)
      lines.push(`  ${"".padEnd(18)} its settings changed: the earlier records were moved to ${stage.movedAside}`);
    if (stage.restoredFrom)
      lines.push(`  ${"".padEnd(18)} reused the records made earlier with these settings (from ${stage.restoredFrom})`);
  }
  if (!result.alreadyFinished) {
    lines.push(
      `  ${"tokens".padEnd(18)} ${result.usage.promptTokens} prompt, ${result.usage.completionTokens} generated (this invocation)`,
    );
  }
  for (const [stage, adapter] of Object.entries(result.adapters)) {
    lines.push(`  ${`adapter (${stage})`.padEnd(25)} ${adapter}${adapter === result.finalAdapter ? "  (final)" : ""}`);
  }
  if (result.reportPath) lines.push(`  ${"report".padEnd(25)} ${result.reportPath}`);
  for (const warning of result.warnings) lines.push(`  WARNING: ${warning}`);
  return `${lines.join("\n")}\n`;
}

/** Run the pipeline with progress rendering and Ctrl+C handling, then print the summary and what to run next. */
export async function runPipelineCommand(
  loaded: import("../../pipeline/pipeline-config.js").LoadedPipelineConfig,
): Promise<void> {
  const { runPipeline } = await import("../../pipeline/run-pipeline.js");
  const { baseModelOf } = await import("../../pipeline/resolve-models.js");
  const result = await withProgress((onProgress, signal) => runPipeline({ loaded, onProgress, signal }));
  process.stdout.write(formatPipelineSummary(result));
  const adapter = result.finalAdapter;
  const baseModel = baseModelOf(loaded);
  process.stdout.write(
    formatNextCommands({ runDir: result.runDir, ...(adapter ? { adapter } : {}), ...(baseModel ? { baseModel } : {}) }),
  );
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description(
      "Run the whole pipeline from one YAML config: self-instruct, red-team, self-align, engrave, verbose-clone, report. Resumable: run it again after an interruption.",
    )
    .argument("[config]", "config file (create one with 'selfalign init <dir>')", "selfalign.yaml")
    .action(async (configPath: string) => {
      const { loadPipelineConfig } = await import("../../pipeline/pipeline-config.js");
      await runPipelineCommand(await loadPipelineConfig(configPath));
    });
}
