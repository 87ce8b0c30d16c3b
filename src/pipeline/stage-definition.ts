/**
 * A stage as data: everything the runner, `selfalign stage`, `merge`, `status` and `report` need to know about a
 * stage, in one value exported by the stage's folder. Adding a stage is one folder and one line in the registry.
 */
import type { ZodObject, ZodType } from "zod";
import type { LanguageModel } from "../backends/language-model.js";
import type { ModelSpec } from "../backends/model-spec.js";
import type { Constitution } from "../constitution/index.js";
import type { ProgressListener } from "../progress/progress-event.js";
import type { Manifest, Run, Shard, StageStore, StoreRecord } from "../run-store/index.js";
import type { StageUsage } from "../stages/shared/stage-usage.js";
import type { Trainer, TrainOptions } from "../training/trainer.js";
import type { TrainConfig } from "./train-config.js";

/** The models a stage can ask the runner for, by role. */
export const modelRoles = ["generator", "teacher", "trainer", "judge", "policy", "rater"] as const;
export type ModelRole = (typeof modelRoles)[number];
/**
 * Roles whose model is the training base (with an upstream adapter, by default): the runner resolves the training
 * base for a stage with one of them, and the base is part of its settings.
 */
export const baseModelRoles = ["trainer", "teacher", "policy", "judge"] as const satisfies readonly ModelRole[];

/** One folder a stage writes, with the schemas its kept and rejected records are checked against. */
export interface StageFolderSpec {
  name: string;
  kept: ZodType;
  rejected: ZodType;
}

/** What a stage run reports back to the runner. */
export interface StageRunResult {
  /** Tokens this call used (the manifests also hold earlier calls of a resumed run). */
  usage: StageUsage;
  /** The adapter a training stage wrote. */
  adapter?: string;
  /** One line for `selfalign stage`, e.g. "kept 12, rejected 3". */
  summary: string;
  warnings?: string[];
}

/** The round of a repeated group a stage instance belongs to. */
export interface RoundInfo {
  group: string;
  /** 1-based. */
  index: number;
  count: number;
  /** The group's own options (resolved). */
  options: Record<string, unknown>;
}

/** Everything a stage's `run` gets from the runner; a stage never builds a backend or opens a folder itself. */
export interface StageContext<O> {
  definition: StageDefinition<O>;
  /** The stage's options, defaults applied. */
  options: O;
  run: Run;
  runDir: string;
  shard?: Shard;
  constitution: Constitution;
  seed: number;
  round?: RoundInfo;
  /** Open one of the stage's folders (by its name in `definition.folders`), sharded when the run is. */
  store(folder?: string): Promise<StageStore>;
  /** Kept records of an upstream stage's folder (default its first), merged folder first, validated. */
  upstreamRecords<T = StoreRecord>(stage: string, folder?: string): Promise<T[]>;
  /** Kept records of a stage's folder in an earlier round of this group (1-based round). */
  roundRecords<T = StoreRecord>(stage: string, round: number, folder?: string): Promise<T[]>;
  /** The adapter an upstream (or earlier-round) training stage wrote, if it finished. */
  adapterOf(stage: string, round?: number): Promise<string | undefined>;
  /** What an upstream stage recorded in its main folder's manifest besides counts (`extra`), if it ran. */
  manifestExtra(stage: string, round?: number): Promise<Record<string, unknown> | undefined>;
  /**
   * A model by role: "generator" is the run's model (in a round after the first, with the previous round's adapter;
   * `{ base: true }` gives the base alone, `{ adapter }` the base with that adapter instead). Models are created once
   * and shared.
   */
  model(role: "generator", options?: { base?: boolean; adapter?: string }): Promise<LanguageModel>;
  /** Any other model, from a spec (string or object) plus adapters to load. */
  languageModel(spec: ModelSpec, options?: { lora?: string[] }): Promise<LanguageModel>;
  /** The local GGUF the trainers (and a default teacher) load; set when the stage has the "trainer" role. */
  trainBase?: string;
  /** The training base (a local GGUF, or what `trainer: hf` reads) and the configured trainer. */
  trainer(train: TrainConfig): Promise<{ trainer: Trainer; options: TrainOptions; base: string }>;
  /** A path from the config or the command line, resolved (against the config's folder). */
  resolvePath(path: string): string;
  /** The command that made this run (named in dataset cards), when known. */
  command?: string;
  /** Close every model (before training, to free their memory). */
  releaseModels(): Promise<void>;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

/** What a stage's `estimate` gets: its options and the run's constitution, a tokenizer, and upstream estimates. */
export interface StageEstimateContext<O> {
  /** The stage's options, defaults applied. */
  options: O;
  constitution: Constitution;
  /** Tokens of a prompt under the run's model (its tokenizer, BOS included). */
  countTokens(text: string): Promise<number>;
  /** Records an upstream stage (by definition name) is expected to keep; 0 when it is skipped. */
  upstreamRecords(stage: string): number;
  /** Generated tokens of one such record (its answer), when the upstream stage says. */
  upstreamRecordTokens(stage: string): number | undefined;
  /** Every request evaluates its whole prompt (engine.deterministic: no prefix reuse). */
  noPrefixReuse: boolean;
  round?: RoundInfo;
}

/** One kind of prompt a stage sends, at its longest, with the option that bounds what it generates. */
export interface StagePromptLength {
  /** E.g. "question prompt". */
  label: string;
  /** Tokens of the longest such prompt. */
  tokens: number;
  /** Tokens of its fixed part (no demos, seeds or query): every such prompt has at least these. */
  minTokens: number;
  /** New tokens asked for (1 for a score of one-token options). */
  maxTokens: number;
  /** The option that sets `maxTokens`, under the stage's options: "sampling.maxTokens"; absent when it is fixed. */
  maxTokensField?: string;
  /**
   * The config field (whole path) that bounds the prompt's variable part when it is not the stage's own, e.g. the
   * answers salmon-preferences judges, which salmon-responses' `sampling.maxTokens` bounds.
   */
  lengthField?: string;
  /** The model it goes to; the run checks "generator" prompts against the run model's context before any work. */
  role: ModelRole;
}

/**
 * A stage's work before it runs, in tokens: upper bounds where the method's yields are not known (every answer as
 * long as maxTokens, every record kept), with the assumptions named in `notes`.
 */
export interface StageEstimate {
  /** Requests sent. */
  requests: number;
  /** Prompt tokens sent (what a server bills). */
  promptTokens: number;
  /** Prompt tokens evaluated (a shared prefix, such as stage 2's meta-prompt, once per batch of sequences). */
  evaluatedPromptTokens: number;
  /** Tokens generated at most. */
  completionTokens: number;
  /** Tokens a trainer goes through (all epochs). */
  trainTokens: number;
  /** Records it is expected to keep (what later stages work on). */
  records: number;
  /** Generated tokens of one kept record, at most (a later stage trains on them). */
  recordTokens?: number;
  prompts: StagePromptLength[];
  /** The assumptions behind the figures, one sentence each. */
  notes: string[];
}

/** A global rule shards could not apply: `check` a shard record, `add` it once kept, `finish` after the merge. */
export interface MergeRule {
  check(record: StoreRecord): { filter: string; reason: string } | undefined;
  add(record: StoreRecord): void;
  finish?(store: StageStore, merged: readonly StoreRecord[]): void;
}

export interface MergeContext {
  /** Records the merged folder already holds (earlier merges). */
  merged: readonly StoreRecord[];
  constitution: Constitution;
  /** The settings the shards were made with (their shaping options among them), when the shards recorded them. */
  settings?: Record<string, unknown>;
}

/** How the report's record browser shows one record. */
export interface ReportRecordView {
  instruction: string;
  input: string;
  thoughts: string;
  output: string;
  principles: string[];
  questionType?: string;
  topic?: string;
  /** Headings of the detail's thoughts and answer columns, where the stage's records hold something else. */
  labels?: { thoughts?: string; output?: string };
  /** A rating of another record (the `ratings` panel): what was rated, on which aspect, and the score (none when
   * the rating could not be parsed). */
  rating?: { subject: string; aspect: string; score?: number };
}

/** Report panels a folder's records feed. */
export const reportPanels = [
  "prompts",
  "answers",
  "red-team-coverage",
  "preferences",
  "preference-labels",
  "ratings",
] as const;
export type ReportPanel = (typeof reportPanels)[number];

export interface FolderReport {
  view(record: StoreRecord, kept: boolean): ReportRecordView;
  panels?: readonly ReportPanel[];
  /** Figures of the folder for the report's per-round panel (e.g. a kept rate, an eval score), from its manifest. */
  figures?(manifest: Manifest): Record<string, number>;
}

export interface StageDefinition<O = Record<string, unknown>> {
  /** Config key, `selfalign stage <name>`, and (usually) its first folder. */
  name: string;
  /** One line for `--help`, naming the method's part. */
  summary: string;
  folders: readonly StageFolderSpec[];
  /** Stages whose records it reads. */
  upstream: readonly string[];
  /** Its options: a strict zod object, every option with its default (the one source for YAML, flags and help). */
  options: ZodObject;
  /** Options that only say how much to do: changing them keeps the records made so far. */
  amountOptions: readonly string[];
  /** The model roles it uses (the runner resolves them; "trainer" needs a training base). */
  models: readonly ModelRole[];
  /** Skipped unless the config turns it on. Default false. */
  skipByDefault?: boolean;
  /**
   * `selfalign stage` refuses to run it while its upstream stages have kept nothing (in a pipeline it runs anyway,
   * and the run warns that a stage kept no records). Default false.
   */
  needsUpstreamRecords?: boolean | ((options: Record<string, unknown>) => boolean);
  /** Short CLI flags kept for compatibility: flag (kebab-case, no dashes) -> option path ("sampling.maxTokens"). */
  flagAliases?: Readonly<Record<string, string>>;
  run(context: StageContext<O>): Promise<StageRunResult>;
  /**
   * Its work in tokens before it runs (`selfalign run --estimate`), and its prompts' longest lengths, which the run
   * checks against the model's context before any work. Stages without one are left out of the estimate.
   */
  estimate?(context: StageEstimateContext<O>): Promise<StageEstimate>;
  /** Merge rules for its folders (default: records deduplicated by id only). */
  merge?: Readonly<Record<string, (context: MergeContext) => MergeRule>>;
  /** How the report shows each folder's records (default: a generic view of the usual fields). */
  report?: Readonly<Record<string, FolderReport>>;
}

/** What a group's early-stop rule can read: the group's options and the manifests of its finished rounds. */
export interface GroupRoundContext {
  runDir: string;
  /** The group's options (resolved). */
  options: Record<string, unknown>;
  /** The manifest of a member's main folder in a round (undefined when that round has not run). */
  manifest(stage: string, round: number): Promise<Manifest | undefined>;
}

/** A group of stages repeated round after round (I-SHEEP), each round's model the base + the last round's adapter. */
export interface StageGroup {
  kind: "group";
  name: string;
  summary: string;
  stages: readonly StageDefinition[];
  /** Group options (must include `rounds`), with defaults; members' options sit under their names. */
  options: ZodObject;
  amountOptions: readonly string[];
  /** The member whose adapter the next round's generator loads. */
  adapterFrom: string;
  skipByDefault?: boolean;
  /**
   * Asked before each round after the first: why the group should stop here (early stopping), or undefined to go on.
   * The rounds left are reported as "stopped".
   */
  stopBefore?(round: number, context: GroupRoundContext): Promise<string | undefined>;
}

export type RegistryEntry = StageDefinition | StageGroup;

export const isGroup = (entry: RegistryEntry): entry is StageGroup => "kind" in entry && entry.kind === "group";

/** The context's progress listener and abort signal, as the options objects of stage functions take them. */
export function progressOptions(context: Pick<StageContext<unknown>, "onProgress" | "signal">): {
  onProgress?: ProgressListener;
  signal?: AbortSignal;
} {
  return {
    ...(context.onProgress ? { onProgress: context.onProgress } : {}),
    ...(context.signal ? { signal: context.signal } : {}),
  };
}

/** Define a stage with its options' type inferred from the schema. */
export function defineStage<S extends ZodObject>(
  definition: Omit<StageDefinition<import("zod").infer<S>>, "options"> & { options: S },
): StageDefinition<import("zod").infer<S>> {
  return definition as StageDefinition<import("zod").infer<S>>;
}
