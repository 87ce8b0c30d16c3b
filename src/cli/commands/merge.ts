/** `selfalign merge --run <dir> --stage <name>`: join a stage's shards and re-apply its global dedup. */
import { resolve } from "node:path";
import type { Command } from "commander";
import { defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { openRun } from "../../run-store/index.js";
import { type MergeStageResult, mergeStage } from "../../stages/shared/merge-stage.js";

export interface MergeCommandOptions {
  run: string;
  stage: string;
  constitution?: string;
}

export async function runMergeCommand(options: MergeCommandOptions): Promise<MergeStageResult> {
  const run = await openRun(resolve(options.run));
  try {
    const constitution = await loadConstitution(options.constitution ?? defaultConstitutionDir());
    return await mergeStage({ run, stage: options.stage, constitution });
  } finally {
    await run.close();
  }
}

export function registerMerge(program: Command): void {
  program
    .command("merge")
    .description("Join a stage's shards into its main folder and re-apply global dedup across shards.")
    .requiredOption("--run <dir>", "run directory")
    .requiredOption("--stage <name>", "stage to merge: self-instruct, red-team, self-align, ...")
    .option("--constitution <dir>", "constitution folder (its seed tasks join the self-instruct dedup pool)")
    .action(async (options: MergeCommandOptions) => {
      const result = await runMergeCommand(options);
      const missing = result.missingShards.length > 0 ? `; missing shards ${result.missingShards.join(", ")}` : "";
      process.stdout.write(
        `${options.stage}: merged ${result.shards} shards, ${result.read} records, kept ${result.kept}, dropped ${result.dropped}${missing}\n`,
      );
    });
}
