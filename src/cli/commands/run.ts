import { availableParallelism } from "node:os";
import type { Command } from "commander";
import type { PipelineEstimate } from "../../pipeline/estimate-pipeline.js";
import { formatNextCommands } from "../next-commands.js";
import { formatDuration } from "../progress-renderer.js";
import { withProgress } from "../with-progress.js";

const count = (value: number) => Math.round(value).toLocaleString("en-US");

/** The estimate as a table: per stage its requests, tokens, time (and cost), then the assumptions. */
export function formatEstimate(estimate: PipelineEstimate): string {
  const { speed } = estimate;
  const lines = [
    `Estimate for ${estimate.model} (context ${estimate.contextSize}), from speeds measured here in ${formatDuration(speed.seconds)}:`,
    `  prompt ${count(speed.promptTokensPerSecond)} tok/s, generation ${count(speed.decodeTokensPerSecond)} tok/s over ${speed.decodeSequences} sequence${speed.decodeSequences === 1 ? "" : "s"}${speed.trainTokensPerSecond ? `, training ${count(speed.trainTokensPerSecond)} tok/s (+${formatDuration(speed.trainStartSeconds ?? 0)} to load the base)` : ""}`,
  ];
  const share = Math.round(100 * speed.cpuShare);
  if (share < 70)
    lines.push(
      `  (the measurement used ${share}% of this machine's ${availableParallelism()} cores: other work kept them busy, or the run uses fewer threads than cores; the times below are for that share)`,
    );
  const cost = estimate.price !== undefined;
  const header = [
    "stage",
    "requests",
    "prompt tokens",
    "evaluated",
    "generated",
    "trained",
    "time",
    ...(cost ? ["cost"] : []),
  ];
  const rows = estimate.stages.map((stage) => [
    stage.stage,
    count(stage.estimate.requests),
    count(stage.estimate.promptTokens),
    count(stage.estimate.evaluatedPromptTokens),
    count(stage.estimate.completionTokens),
    count(stage.estimate.trainTokens),
    formatDuration(stage.seconds),
    ...(cost ? [(stage.cost ?? 0).toFixed(2)] : []),
  ]);
  const { total } = estimate;
  rows.push([
    "total",
    count(estimate.stages.reduce((sum, stage) => sum + stage.estimate.requests, 0)),
    count(total.promptTokens),
    count(total.evaluatedPromptTokens),
    count(total.completionTokens),
    count(total.trainTokens),
    formatDuration(total.seconds),
    ...(cost ? [(total.cost ?? 0).toFixed(2)] : []),
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const render = (row: string[]) =>
    `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")}`;
  lines.push(render(header), ...rows.map(render));
  if (cost)
    lines.push(
      `  cost at ${estimate.price!.prompt} / ${estimate.price!.completion} per million prompt / generated tokens`,
    );
  for (const stage of estimate.stages) {
    for (const prompt of stage.estimate.prompts) {
      if (prompt.role !== "generator" || prompt.tokens + prompt.maxTokens <= estimate.contextSize) continue;
      const none = prompt.minTokens + prompt.maxTokens > estimate.contextSize;
      lines.push(
        `  WARNING: ${stage.stage}'s longest ${prompt.label} (${prompt.tokens} tokens + ${prompt.maxTokens} new) does not fit the ${estimate.contextSize}-token context: ${none ? "none fits, and the run stops before any work" : "the longest are rejected as context-overflow"}`,
      );
    }
  }
  if (estimate.budget) {
    let tokens = 0;
    let spent = 0;
    const reachedAt = estimate.stages.find((stage) => {
      tokens += stage.estimate.promptTokens + stage.estimate.completionTokens;
      spent += stage.cost ?? 0;
      return (
        (estimate.budget?.tokens !== undefined && tokens >= estimate.budget.tokens) ||
        (estimate.budget?.cost !== undefined && spent >= estimate.budget.cost)
      );
    });
    lines.push(
      reachedAt
        ? `  budget: reached during ${reachedAt.stage} (from an empty run); the run then stops and resumes with a larger budget`
        : "  budget: not reached (from an empty run)",
    );
  }
  if (estimate.notEstimated.length > 0)
    lines.push(`  not estimated (no estimate for these stages yet): ${estimate.notEstimated.join(", ")}`);
  lines.push("Assumptions (the figures are upper bounds where the yield is not known before the run):");
  lines.push("  every answer as long as its maxTokens; prompts as long as the longest seed task makes them");
  for (const stage of estimate.stages) for (const note of stage.estimate.notes) lines.push(`  ${stage.stage}: ${note}`);
  return `${lines.join("\n")}\n`;
}

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
  options: { estimate?: boolean } = {},
): Promise<void> {
  if (options.estimate) {
    const { estimatePipeline } = await import("../../pipeline/estimate-pipeline.js");
    const estimate = await withProgress((onProgress, signal) => estimatePipeline({ loaded, onProgress, signal }));
    process.stdout.write(formatEstimate(estimate));
    return;
  }
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
    .option(
      "--estimate",
      "measure the model's speed for a few seconds and print each stage's tokens and expected time (and cost, with a price per million tokens), then stop without running",
    )
    .addHelpText(
      "after",
      "\nExit status: 0 done, 1 an error, 3 stopped by the config's budget (run again with a larger one to go on), 130 interrupted.",
    )
    .action(async (configPath: string, flags: { estimate?: boolean }) => {
      const { loadPipelineConfig } = await import("../../pipeline/pipeline-config.js");
      await runPipelineCommand(await loadPipelineConfig(configPath), { estimate: flags.estimate === true });
    });
}
