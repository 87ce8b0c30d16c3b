import type { Command } from "commander";
import { type RunStatus, readRunStatus } from "../../run-store/index.js";
import { ConfigError } from "../../errors/index.js";
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";

const number = (value: number) => Math.round(value).toLocaleString("en-US");

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) =>
    row
      .map((cell, column) =>
        column === 0 || column >= row.length - 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!),
      )
      .join("  ")
      .trimEnd(),
  );
}

/** The text `selfalign status` prints: lock state, then one row per stage, then rejections by filter. */
export function formatRunStatus(status: RunStatus): string {
  const lines: string[] = [`run ${status.dir}`];
  const info = status.info;
  if (info) {
    if (info.createdAt) lines.push(`  created      ${info.createdAt}`);
    if (info.constitutionHash) lines.push(`  constitution ${info.constitutionHash}`);
    for (const [role, id] of Object.entries(info.backends ?? {})) lines.push(`  backend      ${role}: ${id}`);
  }
  const held = status.locks.filter((lock) => lock.alive !== false);
  const stale = status.locks.filter((lock) => lock.alive === false);
  if (held.length === 0 && stale.length === 0) lines.push("  lock         free (no process is writing this run)");
  for (const lock of held) {
    const holder = lock.holder!;
    const state = lock.alive ? "held" : "held (cannot check: other host)";
    lines.push(
      `  lock         ${state} by process ${holder.pid} on ${holder.hostname} since ${holder.startedAt} (${lock.path})`,
    );
  }
  for (const lock of stale) {
    lines.push(`  lock         free: stale ${lock.path} left by a process that is gone (the next run takes it over)`);
  }
  lines.push("");
  if (status.stages.length === 0) {
    lines.push("no stages yet");
    return `${lines.join("\n")}\n`;
  }
  const rows = [["stage", "kept", "rejected", "prompt tokens", "completion tokens", "updated", "shards"]];
  for (const stage of status.stages) {
    const { counts, usage, timings } = stage.manifest;
    const shardCount = stage.shardCounts.at(-1);
    const shards =
      shardCount === undefined
        ? "-"
        : `${stage.parts.filter((part) => part.shard?.count === shardCount).length} of ${shardCount}` +
          (stage.missingShards.length > 0 ? ` (missing ${stage.missingShards.join(", ")})` : "");
    rows.push([
      stage.stage,
      number(counts.kept),
      number(counts.rejected),
      number(usage.promptTokens),
      number(usage.completionTokens),
      timings.updatedAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
      shards,
    ]);
  }
  lines.push(...table(rows));
  const rejections = status.stages.filter((stage) => stage.manifest.counts.rejected > 0);
  if (rejections.length > 0) {
    lines.push("", "rejected by filter");
    for (const stage of rejections) {
      const byFilter = Object.entries(stage.manifest.counts.byFilter).sort(
        (a, b) => b[1] - a[1] || a[0].localeCompare(b[0]),
      );
      lines.push(`  ${stage.stage}: ${byFilter.map(([filter, count]) => `${filter} ${number(count)}`).join(", ")}`);
    }
  }
  const torn = status.stages.flatMap((stage) => stage.parts.filter((part) => part.tornLines > 0));
  for (const part of torn)
    lines.push(`warning: ${part.dir} ends with a torn line (the next run drops it and redoes it)`);
  return `${lines.join("\n")}\n`;
}

/**
 * The run directory `selfalign status` reads: the folder given, or, for a config file or a project folder that
 * `selfalign init` made (it holds selfalign.yaml), the run directory of that config.
 */
export async function runDirectoryOf(path: string): Promise<string> {
  const info = await stat(path).catch(() => undefined);
  const config = info?.isFile() ? path : info?.isDirectory() ? join(path, "selfalign.yaml") : undefined;
  if (config === undefined || !(await stat(config).catch(() => undefined))?.isFile()) return path;
  if (info?.isDirectory() && (await stat(join(path, "run.json")).catch(() => undefined))) return path;
  const { loadPipelineConfig, runDirOf } = await import("../../pipeline/pipeline-config.js");
  return runDirOf(await loadPipelineConfig(config));
}

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description("Show a run's stages: records kept and rejected (by filter), token usage, shards, and its lock.")
    .argument("<run>", "run directory, or a config file / project folder (selfalign init) whose run to show")
    .option("--json", "print the status as JSON", false)
    .action(async (runDir: string, options: { json: boolean }) => {
      const dir = await runDirectoryOf(resolve(runDir));
      const info = await stat(dir).catch(() => undefined);
      if (!info?.isDirectory()) {
        throw new ConfigError("run directory does not exist; give the folder a run writes to (e.g. runs/demo)", {
          path: dir,
        });
      }
      const status = await readRunStatus(dir);
      process.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : formatRunStatus(status));
    });
}
