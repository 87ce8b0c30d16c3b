/**
 * `selfalign doctor <model>`: what will and will not work with a base model, found in seconds before a long run.
 * Reads the GGUF header (architecture, tensor types, context) and loads only the vocabulary in llama.cpp (no weights),
 * then checks the tokenizer (BOS, end-of-generation tokens, round trips), the chat template, each generation stage's
 * longest prompt against the context, and the embedded trainer's support for the architecture and its memory.
 * Never downloads: an `hf:` URI must already be in the cache.
 */
import { stat } from "node:fs/promises";
import { totalmem } from "node:os";
import { getLlama, type LlamaModel } from "node-llama-cpp";
import { chatWrapperFor, renderChat } from "../backends/llama-cpp/chat-prompt.js";
import { endTokens } from "../backends/llama-cpp/generate.js";
import { resolveModelSource } from "../backends/llama-cpp/model-source.js";
import type { Constitution } from "../constitution/index.js";
import { GgufFile, ggmlTypeName, tensorElementCount } from "../gguf/index.js";
import { questionSamplingDefaults, topicSamplingDefaults } from "../stages/red-team/run.js";
import { selfAlignSamplingDefaults } from "../stages/self-align/run.js";
import { selfInstructSamplingDefaults } from "../stages/self-instruct/run.js";
import {
  longestChatPrompt,
  longestQuestionPrompt,
  longestSelfAlignPrompt,
  longestSelfInstructPrompt,
  longestTopicPrompt,
} from "../stages/shared/longest-prompts.js";
import { verboseSamplingDefaults } from "../stages/verbose-clone/run.js";
import { readLlamaModelConfig } from "../training/embedded/llama-weights.js";

export const checkStatuses = ["ok", "warn", "fail"] as const;
export type CheckStatus = (typeof checkStatuses)[number];

export interface DoctorCheck {
  /** What is checked: "model file", "tokenizer", ... or a stage name. */
  area: string;
  status: CheckStatus;
  message: string;
}

export interface DoctorReport {
  /** As given (path or hf: URI). */
  model: string;
  /** The local file. */
  path: string;
  architecture: string;
  parameters: number;
  /** Tensor count per storage type (F16, Q4_K, ...). */
  tensorTypes: Record<string, number>;
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  /** GGUF path or hf: URI (looked up in the cache only). */
  model: string;
  /** Context size the run will use. Default: the embedded engine's, min(trained context, 4096). */
  contextSize?: number;
  /** Whose prompts to measure: the run's constitution. */
  constitution: Constitution;
  /** Where hf: models are cached. Default: the engine's. */
  cacheDir?: string;
  /** Memory to plan training in. Default: this machine's. */
  memoryBytes?: number;
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
/** Text a base model must read and write back unchanged: ASCII, accents, CJK, an emoji, spacing, a turn marker. */
const sampleText = "Hello, world! Café déjà vu. 東京タワー 🦙\n\n### User\n  indented\ttab 1234.5";

function metadataString(file: GgufFile, key: string): string | undefined {
  const value = file.value(key);
  return typeof value === "string" ? value : undefined;
}

/** Run every check; a problem is a check with status "fail", never an exception (except an unreadable model). */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const add = (area: string, status: CheckStatus, message: string) => checks.push({ area, status, message });
  const path = await resolveModelSource(options.model, {
    download: false,
    ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
  });

  // The header: architecture, size, storage types, trained context.
  const file = await GgufFile.open(path);
  let architecture: string;
  let parameters = 0;
  const tensorTypes: Record<string, number> = {};
  let trainedContext: number | undefined;
  try {
    architecture = metadataString(file, "general.architecture") ?? "(none)";
    for (const tensor of file.header.tensors) {
      parameters += tensorElementCount(tensor.dims);
      const type = ggmlTypeName(tensor.type) ?? `type ${tensor.type}`;
      tensorTypes[type] = (tensorTypes[type] ?? 0) + 1;
    }
    const context = file.value(`${architecture}.context_length`);
    trainedContext = context === undefined ? undefined : Number(context);
    const bytes = (await stat(path)).size;
    const types = Object.entries(tensorTypes)
      .map(([type, count]) => `${count} ${type}`)
      .join(", ");
    add(
      "model file",
      file.header.tensors.length > 0 ? "ok" : "fail",
      file.header.tensors.length > 0
        ? `${architecture}, ${(parameters / 1e6).toFixed(1)}M parameters in ${gib(bytes)} (${types}); trained context ${trainedContext ?? "not recorded"}`
        : "a vocabulary-only file (no tensors): it has a tokenizer but no weights to run",
    );
  } finally {
    await file.close();
  }

  // The vocabulary, loaded by llama.cpp itself (which also refuses an architecture it does not know).
  const llama = await getLlama({ gpu: false, build: "never" });
  let model: LlamaModel | undefined;
  try {
    model = await llama.loadModel({ modelPath: path, vocabOnly: true });
  } catch (error) {
    add("tokenizer", "fail", `llama.cpp cannot load this model: ${(error as Error).message.split("\n")[0]}`);
  }
  const contextSize = options.contextSize ?? Math.min(trainedContext ?? 4096, 4096);
  try {
    if (model) {
      checkTokenizer(model, add);
      checkChatTemplate(model, add);
      if (trainedContext !== undefined && contextSize > trainedContext)
        add(
          "context",
          "warn",
          `a ${contextSize}-token context is longer than the ${trainedContext} tokens the model was trained on; quality drops past it`,
        );
      else add("context", "ok", `runs use ${contextSize} tokens per sequence (trained on ${trainedContext ?? "?"})`);
      checkStagePrompts(model, options.constitution, contextSize, add);
    }
    await checkTrainer(path, parameters, options.memoryBytes ?? totalmem(), add);
    if (model) {
      add("eval", "ok", "multiple-choice scoring reads llama.cpp's log-probabilities");
      const template = checks.find((check) => check.area === "chat template");
      add(
        "serve",
        template?.status === "ok" ? "ok" : "warn",
        template?.status === "ok"
          ? "completions and chat completions (with the model's chat template)"
          : "completions work; chat completions fall back to a generic prompt format (no chat template)",
      );
    }
  } finally {
    await model?.dispose();
  }
  return { model: options.model, path, architecture, parameters, tensorTypes, checks };
}

function checkTokenizer(model: LlamaModel, add: (area: string, status: CheckStatus, message: string) => void): void {
  const tokens = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0;
  const kind = model.vocabularyType;
  const bos = model.tokens.bos;
  const ends = endTokens(model).map((token) => JSON.stringify(model.detokenize([token], true)));
  const parts = [
    `${tokens} tokens (${kind})`,
    model.tokens.shouldPrependBosToken && bos != null
      ? `BOS ${JSON.stringify(model.tokens.bosString ?? "")} added`
      : "no BOS added",
    `generation ends at ${ends.length > 0 ? ends.join(", ") : "no token"}`,
  ];
  const problems: string[] = [];
  if (ends.length === 0) problems.push("nothing ends a completion but the token limit and stop strings");
  const ids = model.tokenize(sampleText, false);
  const back = model.detokenize(ids);
  const unknownId = model.fileInfo.metadata?.tokenizer?.ggml?.unknown_token_id;
  const unknown = typeof unknownId === "number" ? unknownId : undefined;
  if (kind === "wpm" || kind === "ugm")
    problems.push(
      "an encoder tokenizer that normalises text (case, accents, spaces), so generated text does not read back as written",
    );
  else if (unknown !== undefined && ids.includes(unknown as (typeof ids)[number]))
    problems.push("some characters of a sample text become the unknown token (no byte fallback)");
  else if (back !== sampleText)
    problems.push(`a sample text reads back changed (${JSON.stringify(back)}): the detokenizer rewrites spacing`);
  add(
    "tokenizer",
    problems.length > 0 ? "warn" : "ok",
    `${parts.join("; ")}${problems.length > 0 ? `: ${problems.join("; ")}` : `; text round-trips (${ids.length} tokens for a sample)`}`,
  );
}

function checkChatTemplate(model: LlamaModel, add: (area: string, status: CheckStatus, message: string) => void): void {
  const template = (model.fileInfo.metadata as { tokenizer?: { chat_template?: unknown } }).tokenizer?.chat_template;
  if (typeof template !== "string" || template.trim() === "") {
    add(
      "chat template",
      "warn",
      "none: the pipeline prompts the base model with plain text and does not need one, but `chat`, judges and serve's chat completions use a generic format",
    );
    return;
  }
  try {
    const wrapper = chatWrapperFor(model);
    const { tokens } = renderChat(model, wrapper, [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
    ]);
    add("chat template", "ok", `${wrapper.wrapperName} renders a two-message chat in ${tokens.length} tokens`);
  } catch (error) {
    add("chat template", "warn", `the template does not render: ${(error as Error).message.split("\n")[0]}`);
  }
}

/** The longest prompt each generation stage builds from the constitution, plus its default new tokens. */
function checkStagePrompts(
  model: LlamaModel,
  constitution: Constitution,
  contextSize: number,
  add: (area: string, status: CheckStatus, message: string) => void,
): void {
  const count = (text: string) => model.tokenize(text, false).length + 1;
  const stages: Array<[string, string, number]> = [
    ["self-instruct", longestSelfInstructPrompt(constitution), selfInstructSamplingDefaults.maxTokens],
    ["red-team", longestQuestionPrompt(constitution), questionSamplingDefaults.maxTokens],
    ["red-team topics", longestTopicPrompt(constitution), topicSamplingDefaults.maxTokens],
    ["self-align", longestSelfAlignPrompt(constitution), selfAlignSamplingDefaults.maxTokens],
    ["verbose-clone teacher", longestChatPrompt(constitution, "verbose"), verboseSamplingDefaults.maxTokens],
  ];
  for (const [stage, prompt, maxTokens] of stages) {
    const tokens = count(prompt);
    const needed = tokens + maxTokens;
    if (needed <= contextSize)
      add(stage, "ok", `longest prompt ${tokens} tokens + ${maxTokens} new = ${needed} of ${contextSize}`);
    else
      add(
        stage,
        "fail",
        `longest prompt ${tokens} tokens + ${maxTokens} new = ${needed}, more than the ${contextSize}-token context: raise the context size (engine.contextSize, --ctx) or lower the stage's maxTokens`,
      );
  }
}

async function checkTrainer(
  path: string,
  parameters: number,
  memoryBytes: number,
  add: (area: string, status: CheckStatus, message: string) => void,
): Promise<void> {
  try {
    const config = await readLlamaModelConfig(path, { checkTensorTypes: true });
    // The trainer holds the frozen weights as F32, plus activations and the adapter (a fraction more).
    const weights = parameters * 4;
    const status: CheckStatus = weights > memoryBytes ? "fail" : weights > 0.7 * memoryBytes ? "warn" : "ok";
    const fit =
      status === "ok"
        ? `fits in ${gib(memoryBytes)}`
        : status === "warn"
          ? `close to the ${gib(memoryBytes)} of memory`
          : `more than the ${gib(memoryBytes)} of memory: use the hf trainer on a GPU machine`;
    for (const stage of ["engrave", "verbose-clone"])
      add(
        stage,
        status,
        `embedded LoRA trainer supports ${config.architecture} (${config.layers} layers, width ${config.dim}); frozen weights as F32 take ${gib(weights)}, ${fit}`,
      );
  } catch (error) {
    for (const stage of ["engrave", "verbose-clone"])
      add(stage, "fail", `embedded trainer: ${(error as Error).message}`);
  }
}

/** The report as lines a person reads: one per check, marked ok / warn / FAIL, with a summary. */
export function formatDoctorReport(report: DoctorReport): string {
  const mark = { ok: "ok  ", warn: "warn", fail: "FAIL" } as const;
  const width = Math.max(...report.checks.map((check) => check.area.length));
  const lines = [`${report.model}${report.path !== report.model ? ` (${report.path})` : ""}`];
  for (const check of report.checks)
    lines.push(`  ${mark[check.status]}  ${check.area.padEnd(width)}  ${check.message}`);
  const failed = report.checks.filter((check) => check.status === "fail").length;
  const warned = report.checks.filter((check) => check.status === "warn").length;
  lines.push(
    failed > 0
      ? `${failed} check${failed === 1 ? "" : "s"} failed: fix them before a long run.`
      : `no failures${warned > 0 ? ` (${warned} warning${warned === 1 ? "" : "s"})` : ""}.`,
  );
  return `${lines.join("\n")}\n`;
}
