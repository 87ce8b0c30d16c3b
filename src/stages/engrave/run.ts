/**
 * Stage 3, principle engraving (method-spec A.5): build the SFT set from the kept self-aligned answers (principles,
 * exemplars and internal thoughts removed; the constitution's identity exchanges added), export it as Alpaca and chat
 * JSONL and Parquet with a dataset card, and train a LoRA adapter on the base model with the configured trainer.
 */
import { join } from "node:path";
import type { Constitution } from "../../constitution/index.js";
import { writeParquetDataset } from "../../data/write-dataset.js";
import { AbortedError, ConfigError } from "../../errors/index.js";
import { packageVersion } from "../../package-root.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type { StageStore } from "../../run-store/index.js";
import { writeJsonLines } from "../../run-store/json-file.js";
import type { SftExample, Trainer, TrainOptions, TrainRequest, TrainResult } from "../../training/trainer.js";
import { type AnswerRecord, identityRecords, type SftRecord, toAlpaca, toMessages, toSftRecord } from "./build-sft.js";

export const engraveStage = "engrave";

export interface RunEngraveOptions extends TrainAdapterOptions {
  /** The `engrave` stage store: SFT records go to its records.jsonl. */
  store: StageStore;
  /** Kept stage-2 answers. */
  answers: readonly AnswerRecord[];
  constitution: Constitution;
  /** Add the constitution's "who are you" exchanges. Default true. */
  includeIdentity?: boolean;
  /** The command that made the run, named in the dataset card (README.md). Default: "not recorded". */
  command?: string;
}

export interface RunEngraveResult {
  counts: { examples: number; fromAnswers: number; identity: number };
  train: TrainResult;
  /** Exported datasets. */
  files: ReturnType<typeof sftFiles>;
}

/** The files of an engrave-like stage folder: SFT exports and the adapter directory. */
export function sftFiles(dir: string) {
  return {
    sft: join(dir, "records.jsonl"),
    alpaca: join(dir, "alpaca.jsonl"),
    messages: join(dir, "messages.jsonl"),
    alpacaParquet: join(dir, "alpaca.parquet"),
    messagesParquet: join(dir, "messages.parquet"),
    /** The dataset card of the Parquet files. */
    card: join(dir, "README.md"),
    adapterDir: join(dir, "adapter"),
  };
}

const sftFieldDescriptions = {
  instruction: "the user's request",
  input: 'context or data that follows the request ("" when none)',
  output: "the assistant's answer",
  messages: "the conversation: the system prompt, the user's turn (instruction and input) and the assistant's answer",
};

/**
 * Store the SFT set built now (records not yet stored are appended, so the run keeps their provenance) and write the
 * Alpaca / chat exports of exactly this set, as JSONL and as Parquet with a dataset card, so the folder uploads to a
 * dataset hub as it is. Records stored by an earlier configuration are not part of it.
 */
export async function storeSftRecords(
  store: StageStore,
  records: SftRecord[],
  constitution: Constitution,
  card: { command?: string } = {},
) {
  for (const record of records) if (!store.isDone(record.id)) await store.appendRecord({ ...record });
  await store.saveManifest();
  const files = sftFiles(store.dir);
  // Exports in the field's formats (no ids), read unchanged by Alpaca- and chat-SFT tooling.
  const alpaca = records.map(toAlpaca);
  const messages = records.map((r) => toMessages(r, constitution.assistant));
  await writeJsonLines(files.alpaca, alpaca);
  await writeJsonLines(files.messages, messages);
  const text = { kind: "string" } as const;
  await writeParquetDataset(store.dir, {
    title: `${constitution.assistant.name}: supervised fine-tuning data (${store.stage})`,
    summary:
      `Prompts and answers that taught ${constitution.assistant.name} its principles, made by selfalign's ` +
      `\`${store.stage}\` stage: ${records.length} examples, as chat messages and as Alpaca rows.`,
    files: [
      {
        config: "messages",
        file: "messages.parquet",
        rows: messages,
        columns: [{ name: "messages", kind: "struct-list", fields: ["role", "content"] }],
        default: true,
      },
      {
        config: "alpaca",
        file: "alpaca.parquet",
        rows: alpaca,
        columns: [
          { name: "instruction", ...text },
          { name: "input", ...text },
          { name: "output", ...text },
        ],
      },
    ],
    fieldDescriptions: sftFieldDescriptions,
    constitutionHash: constitution.hash,
    ...(card.command === undefined ? {} : { command: card.command }),
    provenance: { "selfalign version": packageVersion() },
    alsoAs: ["messages.jsonl", "alpaca.jsonl"],
  });
  return files;
}

/** What training an adapter needs; shared by engraving and verbose cloning. */
export interface TrainAdapterOptions {
  trainer: Trainer;
  base: string;
  trainOptions?: TrainOptions;
  /** Continue training this adapter instead of a fresh LoRA (see TrainRequest.initAdapter). */
  initAdapter?: string;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

/**
 * Train a LoRA adapter on SFT records into `adapterDir` (resuming an unfinished checkpoint there) and record the
 * adapter and its final loss in `store`'s manifest, where the pipeline and the report look for them.
 */
export async function trainAdapter(
  store: StageStore,
  records: readonly (SftExample & { id: string })[],
  adapterDir: string,
  options: TrainAdapterOptions,
): Promise<TrainResult> {
  if (options.signal?.aborted) throw new AbortedError();
  const train = await trainNamingTheStage(store.stage, options, {
    base: options.base,
    examples: records.map(({ prompt, completion }) => ({ prompt, completion })),
    output: adapterDir,
    options: { resume: true, ...options.trainOptions },
    ...(options.initAdapter === undefined ? {} : { initAdapter: options.initAdapter }),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  store.manifest.extra.adapter = train.adapterPath;
  store.manifest.extra.finalLoss = train.finalLoss;
  if (train.data) store.manifest.extra.trainingData = train.data;
  if (train.data?.truncated) {
    options.onProgress?.({
      type: "message",
      level: "warn",
      text: `${store.stage}: ${train.data.truncated} of ${train.data.used} training examples were longer than cutoffLen and were cut at it (stages.${store.stage}.train.cutoffLen raises it)`,
    });
  }
  await store.saveManifest();
  return train;
}

/** Train; a training error about the data's length names the stage's config field to change. */
async function trainNamingTheStage(stage: string, options: TrainAdapterOptions, request: TrainRequest) {
  try {
    return await options.trainer.train(request);
  } catch (error) {
    if (error instanceof ConfigError && (error.field === "cutoffLen" || /cutoffLen|cutoff-len/.test(error.message))) {
      throw new ConfigError(`${stage}: ${error.message.replace(/ \(--cutoff-len\)/, "")}`, {
        field: `stages.${stage}.train.cutoffLen`,
        cause: error,
      });
    }
    throw error;
  }
}

export async function runEngrave(options: RunEngraveOptions): Promise<RunEngraveResult> {
  const { store, constitution } = options;
  const fromAnswers = options.answers.map((answer) => toSftRecord(answer, constitution.assistant, "concise"));
  const identity = (options.includeIdentity ?? true) ? identityRecords(constitution.assistant, "concise") : [];
  const all = [...fromAnswers, ...identity];
  const files = await storeSftRecords(store, all, constitution, {
    ...(options.command ? { command: options.command } : {}),
  });
  if (all.length === 0) {
    throw new ConfigError(
      "engrave: no training examples: stage 2 kept no answers and identity exchanges are off. Generate more prompts or check the self-align rejections ('selfalign status')",
      { path: files.sft },
    );
  }
  const train = await trainAdapter(store, all, files.adapterDir, options);
  return { counts: { examples: all.length, fromAnswers: fromAnswers.length, identity: identity.length }, train, files };
}
