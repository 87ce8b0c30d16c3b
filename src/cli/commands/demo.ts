import type { Command } from "commander";
import { runPipelineCommand } from "./run.js";

const banner = `selfalign demo: a MECHANICS CHECK of the whole pipeline, offline, on a tiny random-weight model written here.
Every stage really runs (generation, filters, LoRA training, report), but with random weights the texts are
nonsense and most generations are rejected. For real results run 'selfalign run' on a real base model.
`;

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "Run the identical pipeline offline on a tiny GGUF it writes (a mechanics check; outputs are nonsense).",
    )
    .option("--dir <dir>", "folder for the tiny model and the run", "runs/demo")
    .option("--seed <n>", "seed of the model and the run", (value) => Number.parseInt(value, 10), 7)
    .option("--estimate", "print each stage's tokens and expected time (speeds measured here), then stop")
    .action(async (options: { dir: string; seed: number; estimate?: boolean }) => {
      const { prepareDemo } = await import("../../pipeline/demo.js");
      process.stderr.write(banner);
      await runPipelineCommand(await prepareDemo({ dir: options.dir, seed: options.seed }), {
        estimate: options.estimate === true,
      });
    });
}
