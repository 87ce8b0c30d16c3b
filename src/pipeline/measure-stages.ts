/**
 * Each stage's work measured before any is done, from its `estimate` hook: the longest prompt of each kind it sends
 * (under the run model's tokenizer) and the tokens it will evaluate, generate and train on. `selfalign run` checks the
 * prompt lengths against the model's context (and `cutoffLen` against the training base's) before the first stage;
 * `selfalign run --estimate` multiplies the tokens by measured speeds.
 */
import type { BackendConfig } from "../backends/backend-config.js";
import type { LanguageModel } from "../backends/language-model.js";
import { ConfigError } from "../errors/index.js";
import { GgufFile } from "../gguf/index.js";
import type { LoadedPipelineConfig } from "./pipeline-config.js";
import type { PreparedPipeline } from "./run-pipeline.js";
import type { StageInstance } from "./stage-context.js";
import type { StageEstimate } from "./stage-definition.js";

/** A tokenizer and context size of the run's model, opened without its weights where it can be. */
export interface TokenCounter {
  countTokens(text: string): Promise<number>;
  /** The context a sequence of the run's model has. */
  contextSize: number;
  close(): Promise<void>;
}

/**
 * The run model's tokenizer: an embedded model's vocabulary alone (llama.cpp's, no weights: about a second), or the
 * model's own backend (a server's `/tokenize`) when `model` is given.
 */
export async function openTokenCounter(config: BackendConfig, model?: LanguageModel): Promise<TokenCounter> {
  if (model || config.type !== "llama-cpp") {
    const backend = model ?? (await (await import("../backends/registry.js")).createBackend(config));
    return {
      countTokens: (text) => backend.countTokens(text),
      contextSize: backend.capabilities().maxContext,
      close: async () => {
        if (!model) await backend.close();
      },
    };
  }
  const { getSharedLlama } = await import("../backends/llama-cpp/llama-instance.js");
  // The binding the engine will use (one per GPU setting), not a second one.
  const llama = await getSharedLlama(config.gpu ?? false);
  const vocab = await llama.loadModel({ modelPath: config.model, vocabOnly: true });
  return {
    // As the embedded backend counts (llama-cpp-backend.ts countTokens): no BOS.
    countTokens: async (text) => vocab.tokenize(text, false).length,
    contextSize: config.contextSize ?? Math.min(vocab.trainContextSize, 4096),
    close: () => vocab.dispose(),
  };
}

export interface MeasuredStage {
  instance: StageInstance;
  estimate: StageEstimate;
}

/** The config field of a stage instance's option (`stages.<stage>.<path>`, a group member under its group). */
export function stageField(instance: StageInstance, path: string): string {
  const stage = instance.round ? `${instance.round.group}.${instance.definition.name}` : instance.definition.name;
  return `stages.${stage}.${path}`;
}

/** The estimate of every stage that runs and has an `estimate` hook, in run order. */
export async function measureStages(prepared: PreparedPipeline, counter: TokenCounter): Promise<MeasuredStage[]> {
  const measured: MeasuredStage[] = [];
  // Upstream estimates by definition name (the latest round's, inside a group).
  const byStage = new Map<string, StageEstimate>();
  for (const instance of prepared.instances) {
    if (instance.skip || !instance.definition.estimate) continue;
    const estimate = await instance.definition.estimate({
      options: instance.options,
      constitution: prepared.constitution,
      countTokens: (text) => counter.countTokens(text),
      upstreamRecords: (stage) => byStage.get(stage)?.records ?? 0,
      upstreamRecordTokens: (stage) => byStage.get(stage)?.recordTokens,
      noPrefixReuse: prepared.config.engine.deterministic === true,
      ...(instance.round ? { round: instance.round } : {}),
    });
    byStage.set(instance.definition.name, estimate);
    measured.push({ instance, estimate });
  }
  return measured;
}

const located = (loaded: LoadedPipelineConfig, field: string) => {
  const line = loaded.lineOf?.(field.split("."));
  return { ...(loaded.path ? { path: loaded.path } : {}), ...(line !== undefined ? { line } : {}), field };
};

/**
 * Before any work: fail when even the fixed part of a stage's prompts (no demos, seeds or query: the stage-2
 * meta-prompt, say) and its new tokens cannot fit the run model's context, since every such request would be rejected,
 * naming the option to lower or the context to raise. Returns a warning for each kind whose longest prompt does not
 * fit (those requests are rejected as context-overflow, the others run).
 */
export function checkPromptLengths(
  loaded: LoadedPipelineConfig,
  measured: MeasuredStage[],
  contextSize: number,
): string[] {
  const warnings: string[] = [];
  for (const { instance, estimate } of measured) {
    for (const prompt of estimate.prompts) {
      if (prompt.role !== "generator" || prompt.tokens + prompt.maxTokens <= contextSize) continue;
      const maxTokensField =
        prompt.maxTokensField === undefined ? undefined : stageField(instance, prompt.maxTokensField);
      if (prompt.minTokens + prompt.maxTokens <= contextSize) {
        const lower = maxTokensField
          ? `lower ${maxTokensField} to ${Math.max(1, contextSize - prompt.tokens)}`
          : prompt.lengthField
            ? `lower ${prompt.lengthField}`
            : undefined;
        warnings.push(
          `${instance.name}: its longest ${prompt.label} (${prompt.tokens} tokens + ${prompt.maxTokens} new) does not fit the ${contextSize}-token context, so the longest requests will be rejected as context-overflow; ${lower ? `${lower} or ` : ""}raise engine.contextSize to keep them`,
        );
        continue;
      }
      const room = contextSize - prompt.minTokens;
      // Lowering maxTokens helps only while the fixed part alone fits.
      const field = room > 0 && maxTokensField ? maxTokensField : "engine.contextSize";
      throw new ConfigError(
        `${instance.name}: every ${prompt.label} has at least ${prompt.minTokens} tokens (its longest ${prompt.tokens}) and asks for ${prompt.maxTokens} new ones, more than the ${contextSize}-token context, so every request would be rejected; ${room > 0 && maxTokensField ? `lower ${maxTokensField} to at most ${room} or ` : ""}raise engine.contextSize (or the model's contextSize)`,
        located(loaded, field),
      );
    }
  }
  return warnings;
}

/** Fail before any work when a training stage's `cutoffLen` is longer than the training base was trained on. */
export async function checkCutoffLengths(loaded: LoadedPipelineConfig, prepared: PreparedPipeline): Promise<void> {
  if (!prepared.trainBase) return;
  const training = prepared.instances.filter(
    (instance) => !instance.skip && typeof (instance.options.train as { cutoffLen?: unknown })?.cutoffLen === "number",
  );
  if (training.length === 0) return;
  const file = await GgufFile.open(prepared.trainBase);
  let context: number | undefined;
  try {
    const architecture = file.value("general.architecture");
    const value = typeof architecture === "string" ? file.value(`${architecture}.context_length`) : undefined;
    context = value === undefined ? undefined : Number(value);
  } finally {
    await file.close();
  }
  if (context === undefined || !Number.isFinite(context)) return;
  for (const instance of training) {
    const cutoffLen = (instance.options.train as { cutoffLen: number }).cutoffLen;
    if (cutoffLen <= context) continue;
    const field = stageField(instance, "train.cutoffLen");
    throw new ConfigError(
      `${instance.name}: cutoffLen ${cutoffLen} is longer than the ${context} tokens ${prepared.trainBase} was trained on; set ${field} to at most ${context}`,
      located(loaded, field),
    );
  }
}
