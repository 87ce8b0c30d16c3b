/**
 * An evaluation as data: its name, its options (a zod schema with defaults, the one source of the
 * `selfalign eval <name>` flags and their help), how its data is loaded, and how it runs. `evalRegistry` lists every
 * definition and the CLI iterates it. The pieces shared by the item tasks live here too: output places, the
 * resumable item folder, the model and prompt options.
 */
import { stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import type { LanguageModel } from "../backends/language-model.js";
import { defaultConstitutionDir, loadConstitution } from "../constitution/index.js";
import { ConfigError } from "../errors/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import { openRun, type Run } from "../run-store/run.js";
import { type EvalResult, evalDirName, flattenAggregate, writeEvalResult } from "./eval-result.js";
import { plainPromptTemplate, type PromptTemplate, promptTemplateFromAssistant } from "./prompt-template.js";

/** What a definition gets from its caller besides its options. */
export interface EvalContext {
  onProgress: ProgressListener;
  signal: AbortSignal;
  /** Open a model spec (`llama-cpp:<m.gguf>`, `<m.gguf>`, `openai:<url>#<name>`) with an optional LoRA adapter. */
  openModel: (spec: string, adapter?: string) => Promise<LanguageModel>;
}

/** What a definition's run hands back for the user. */
export interface EvalOutput {
  /** The result written to eval.json (none for `compare`). */
  result?: EvalResult;
  /** For standard output. */
  text: string;
  /** Notes for standard error (files written besides eval.json). */
  notes: string[];
  warnings: string[];
}

export interface EvalDefinition<Options = unknown, Loaded = unknown> {
  name: string;
  /** One line for `selfalign eval --help`. */
  description: string;
  /** Positional arguments (`compare a.json b.json`). */
  arguments?: ReadonlyArray<{ name: string; description: string }>;
  /** Options with their defaults and help text: CLI flags are made from it, and parsed through it. */
  options: z.ZodObject;
  /** Check the options and read the data before any model is opened, so a bad flag or file fails at once. */
  load(options: Options, args: string[]): Promise<Loaded>;
  run(loaded: Loaded, options: Options, context: EvalContext): Promise<EvalOutput>;
}

/** Type a definition (its options are those of its schema). */
export function defineEval<Schema extends z.ZodObject, Loaded>(
  definition: EvalDefinition<z.infer<Schema>, Loaded> & { options: Schema },
): EvalDefinition<z.infer<Schema>, Loaded> & { options: Schema } {
  return definition;
}

/** Where results go: `--out`, or `<run>/eval/<name>.json` with `--run` (the place `selfalign report` reads). */
export const outputOptions = {
  out: z.string().optional().meta({
    description:
      "result file (default eval.json); per-item records are kept in <out name>-items/ beside it, so a stopped eval run again continues",
    placeholder: "<path>",
  }),
  run: z.string().optional().meta({
    description: "run directory: write <run>/eval/<name>.json, where `selfalign report <run>` picks it up",
    placeholder: "<dir>",
  }),
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a file name such as "hhh-adapter" (letters, digits, ".", "-", "_")')
    .optional()
    .meta({
      description: "with --run: the result's name under <run>/eval/ (default: the task)",
      placeholder: "<name>",
    }),
  concurrency: z
    .number()
    .int()
    .min(1, "must be at least 1")
    .optional()
    .meta({ description: "requests in flight (default: the backend's parallelism)", placeholder: "<n>" }),
};

/** The data file of a task that reads one. */
export const dataOption = {
  data: z
    .string({ message: "is required: the benchmark file to evaluate on" })
    .meta({ description: "data file", placeholder: "<path>" }),
};

/** The data files or folders of a task that merges several. */
export const dataFilesOption = {
  data: z
    .array(z.string(), { message: "is required: the benchmark files to evaluate on" })
    .min(1, "is required: the benchmark files to evaluate on")
    .meta({ description: "data file or folder", placeholder: "<path>", repeatable: true }),
};

export const modelOptions = {
  model: z.string({ message: "is required: the model under test, e.g. --model m.gguf" }).meta({
    description: "model under test: llama-cpp:<m.gguf>, <m.gguf>, openai:<url>#<name>",
    placeholder: "<spec>",
  }),
  adapter: z
    .string()
    .optional()
    .meta({ description: "LoRA adapter GGUF loaded on the embedded model", placeholder: "<path>" }),
};

export const promptStyles = ["concise", "verbose", "plain"] as const;

/** How chat-format prompts are wrapped (method-spec A.7). */
export const promptOptions = {
  constitution: z.string().optional().meta({
    description: "constitution whose assistant format wraps prompts (default: the built-in one)",
    placeholder: "<dir>",
  }),
  promptStyle: z.enum(promptStyles).default("concise").meta({
    description: "prompt wrapping: the constitution's concise or verbose format, or the built-in plain template",
    placeholder: "<style>",
  }),
};

export async function promptTemplateFor(options: {
  constitution?: string | undefined;
  promptStyle: (typeof promptStyles)[number];
}): Promise<PromptTemplate> {
  if (options.promptStyle === "plain") return plainPromptTemplate;
  const constitution = await loadConstitution(options.constitution ?? defaultConstitutionDir());
  return promptTemplateFromAssistant(constitution.assistant, options.promptStyle);
}

export interface EvalPaths {
  /** eval.json. */
  out: string;
  /** The run store of the per-item records: `<out name>-items/`. */
  items: string;
  /** `<prefix>-<out name>.jsonl` beside eval.json (answers-eval.jsonl, judgments-eval.jsonl). */
  beside: (prefix: string) => string;
}

type OutputOptions = { out?: string | undefined; run?: string | undefined; name?: string | undefined };

/** Where a task writes, from `--out` or `--run`/`--name`. */
export async function evalPaths(options: OutputOptions, task: string): Promise<EvalPaths> {
  if (options.run !== undefined && options.out !== undefined) {
    throw new ConfigError(
      `give --out or --run, not both (with --run the result is <run>/eval/<name>.json; pick the name with --name)`,
    );
  }
  if (options.name !== undefined && options.run === undefined) {
    throw new ConfigError("--name names a result inside a run directory; give --run <dir> with it, or use --out");
  }
  let out = options.out ?? "eval.json";
  if (options.run !== undefined) {
    if (!(await stat(options.run).catch(() => undefined))?.isDirectory()) {
      throw new ConfigError("run directory not found; pass the folder a `selfalign run` or `selfalign stage` wrote", {
        path: options.run,
      });
    }
    out = join(options.run, evalDirName, `${options.name ?? task}.json`);
  }
  const stem = basename(out, ".json");
  return {
    out,
    items: join(dirname(out), `${stem}-items`),
    beside: (prefix) => join(dirname(out), `${prefix}-${stem}.jsonl`),
  };
}

/**
 * Run an item task with its per-item store open: the store's lock is held while `body` runs (a second eval into the
 * same place is refused), eval.json is written at the end, and the store is closed whatever happens.
 */
export async function runItemEval(
  paths: EvalPaths,
  body: (store: Run) => Promise<{ result: EvalResult; notes?: string[] }>,
): Promise<EvalOutput> {
  const store = await openRun(paths.items, { create: true });
  try {
    const { result, notes = [] } = await body(store);
    await writeEvalResult(paths.out, result);
    return { result, text: `${summary(result)}wrote ${paths.out}\n`, notes, warnings: result.warnings };
  } finally {
    await store.close();
  }
}

function formatMetric(value: number): string {
  if (Number.isNaN(value)) return "n/a";
  return Number.isInteger(value) ? String(value) : value.toFixed(4);
}

/** The aggregate as indented lines under a heading naming the task and model. */
export function summary(result: EvalResult): string {
  const lines = [...flattenAggregate(result.aggregate)].map(([metric, value]) => `  ${metric}: ${formatMetric(value)}`);
  const model = `${result.model.id}${result.model.adapter ? ` + ${result.model.adapter}` : ""}`;
  return `${result.task} (${model})\n${lines.join("\n")}\n`;
}

/** Open the models a run needs and close every one of them afterwards, also on failure. */
export async function withModels<T>(
  context: EvalContext,
  work: (open: (spec: string, adapter?: string) => Promise<LanguageModel>) => Promise<T>,
): Promise<T> {
  const opened: LanguageModel[] = [];
  try {
    return await work(async (spec, adapter) => {
      const model = await context.openModel(spec, adapter);
      opened.push(model);
      return model;
    });
  } finally {
    for (const model of opened) await model.close();
  }
}
