import type { Command } from "commander";
import { withInterrupt } from "../interrupt.js";
import { createProgressRenderer } from "../progress-renderer.js";

/** Print the end-of-run summary: counts, rejects by filter, tokens, adapters, report. */
export function formatPipelineSummary(result: import("../../pipeline/run-pipeline.js").RunPipelineResult): string {
  const lines = [
    result.alreadyFinished
      ? `Nothing to do: every stage of ${result.runDir} is already finished with this config.`
      : `Finished ${result.runDir}.`,
  ];
  for (const stage of result.stages) {
    const counts = stage.kept === undefined ? "" : `  kept ${stage.kept}, rejected ${stage.rejected}`;
    const filters = Object.entries(stage.byFilter ?? {})
      .sort((a, b) => b[1] - a[1])
      .map(([filter, count]) => `${filter} ${count}`)
      .join(", ");
    lines.push(`  ${stage.stage.padEnd(14)} ${stage.status.padEnd(10)}${counts}${filters ? ` (${filters})` : ""}`);
  }
  if (!result.alreadyFinished) {
    lines.push(
      `  tokens         ${result.usage.promptTokens} prompt, ${result.usage.completionTokens} generated (this invocation)`,
    );
  }
  if (result.adapters.engrave) lines.push(`  engraved adapter  ${result.adapters.engrave}`);
  if (result.adapters.final) lines.push(`  final adapter     ${result.adapters.final}`);
  if (result.reportPath) lines.push(`  report            ${result.reportPath}`);
  return `${lines.join("\n")}\n`;
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
      const { runPipeline } = await import("../../pipeline/run-pipeline.js");
      const loaded = await loadPipelineConfig(configPath);
      const renderer = createProgressRenderer();
      try {
        const result = await withInterrupt(
          (signal) => runPipeline({ loaded, onProgress: renderer.onProgress, signal }),
          {
            onInterrupt: () => renderer.close(),
          },
        );
        renderer.close();
        process.stdout.write(formatPipelineSummary(result));
      } finally {
        renderer.close();
      }
    });
}
