/**
 * `selfalign eval <task>`: one subcommand per definition in the eval registry, its flags and help made from the
 * definition's options schema (as `selfalign stage` does, through zod-flags). This file names no task.
 */
import type { Command } from "commander";
import type { z } from "zod";
import type { LanguageModel } from "../../backends/language-model.js";
import { ConfigError } from "../../errors/index.js";
import type { EvalDefinition } from "../../eval/eval-definition.js";
import { evalRegistry } from "../../eval/registry.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { withProgress } from "../with-progress.js";
import { addSchemaFlags, type SchemaFlag, schemaFlags, valuesFromFlags } from "../zod-flags.js";

/** Open a model spec with an optional adapter (embedded backend only). */
async function openModel(
  spec: string,
  adapter: string | undefined,
  onProgress: ProgressListener,
): Promise<LanguageModel> {
  // Loaded here, not at the top: the registry pulls in node-llama-cpp, which every other command would pay for.
  const { createBackend, parseBackendSpec } = await import("../../backends/registry.js");
  const config = parseBackendSpec(spec);
  if (adapter !== undefined) {
    if (config.type !== "llama-cpp") {
      throw new ConfigError(
        `--adapter needs an embedded model (llama-cpp:<model.gguf>); for "${spec}" load the adapter on the server instead`,
        { field: "adapter" },
      );
    }
    config.lora = [...(config.lora ?? []), { path: adapter }];
  }
  return createBackend(config, { onProgress });
}

const shownWarnings = 5;

/** The options the flags describe, through the definition's schema; the first problem names its flag. */
export function evalOptions(schema: z.ZodObject, flags: SchemaFlag[], parsed: Record<string, unknown>): unknown {
  const result = schema.safeParse(valuesFromFlags(parsed, flags));
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const flag = flags.find((one) => one.path.join(".") === issue.path.map(String).join("."))?.flag;
  // The message names the flag itself (a `field` would print it a second time).
  throw new ConfigError(flag ? `--${flag}: ${issue.message}` : issue.message);
}

function register(parent: Command, definition: EvalDefinition): void {
  const command = parent.command(definition.name).description(definition.description);
  for (const argument of definition.arguments ?? []) command.argument(`<${argument.name}>`, argument.description);
  const flags = schemaFlags(definition.options);
  addSchemaFlags(command, flags);
  command.action(async (...received: unknown[]) => {
    // commander passes the positional arguments, then the options object, then the command.
    const args = received.slice(0, definition.arguments?.length ?? 0) as string[];
    const options = evalOptions(definition.options, flags, command.opts());
    const loaded = await definition.load(options, args);
    const output = await withProgress((onProgress, signal) =>
      definition.run(loaded, options, {
        onProgress,
        signal,
        openModel: (spec, adapter) => openModel(spec, adapter, onProgress),
      }),
    );
    for (const note of output.notes) process.stderr.write(`selfalign: ${note}\n`);
    for (const warning of output.warnings.slice(0, shownWarnings))
      process.stderr.write(`selfalign: warning: ${warning}\n`);
    if (output.warnings.length > shownWarnings) {
      const where = output.result ? " (all are in eval.json)" : "";
      process.stderr.write(`selfalign: ... ${output.warnings.length - shownWarnings} more warnings${where}\n`);
    }
    process.stdout.write(output.text);
  });
}

export function registerEval(program: Command): void {
  const evalCommand = program
    .command("eval")
    .description("Evaluate a model: TruthfulQA, BIG-bench HHH, judge benchmarks; compare results.");
  for (const definition of evalRegistry) register(evalCommand, definition);
}
