/**
 * Stage 3, principle engraving (method-spec A.5): build the SFT set from the kept self-aligned answers (principles,
 * exemplars and internal thoughts removed; the constitution's identity exchanges added), export it as Alpaca and chat
 * JSONL, and train a LoRA adapter on the base model with the configured trainer.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Constitution } from "../../constitution/index.js";
import { AbortedError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { recordId, type StageStore } from "../../run-store/index.js";
import { writeJsonLines } from "../../run-store/json-file.js";
import type { SftExample, Trainer, TrainOptions, TrainResult } from "../../training/trainer.js";
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
}

export interface RunEngraveResult {
  counts: { examples: number; fromAnswers: number; identity: number };
  train: TrainResult;
  /** Exported datasets. */
  files: { sft: string; alpaca: string; messages: string; adapterDir: string };
}

/** The files of an engrave-like stage folder: SFT exports and the adapter directory. */
export function sftFiles(dir: string) {
  return {
    sft: join(dir, "records.jsonl"),
    alpaca: join(dir, "alpaca.jsonl"),
    messages: join(dir, "messages.jsonl"),
    adapterDir: join(dir, "adapter"),
  };
}

/**
 * Store the SFT set built now (records not yet stored are appended, so the run keeps their provenance) and write the
 * Alpaca / chat exports of exactly this set. Records stored by an earlier configuration are not part of it.
 */
export async function storeSftRecords(store: StageStore, records: SftRecord[], constitution: Constitution) {
  for (const record of records) if (!store.isDone(record.id)) await store.appendRecord({ ...record });
  await store.saveManifest();
  const files = sftFiles(store.dir);
  // Exports in the field's formats (no ids), read unchanged by Alpaca- and chat-SFT tooling.
  await writeJsonLines(files.alpaca, records.map(toAlpaca));
  await writeJsonLines(
    files.messages,
    records.map((r) => toMessages(r, constitution.assistant)),
  );
  return files;
}

/** What training an adapter needs; shared by engraving and verbose cloning. */
export interface TrainAdapterOptions {
  trainer: Trainer;
  base: string;
  trainOptions?: TrainOptions;
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
  await dropStaleCheckpoint(adapterDir, records, options.trainOptions ?? {});
  const train = await options.trainer.train({
    base: options.base,
    examples: records.map(({ prompt, completion }) => ({ prompt, completion })),
    output: adapterDir,
    options: { resume: true, ...options.trainOptions },
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  store.manifest.extra.adapter = train.adapterPath;
  store.manifest.extra.finalLoss = train.finalLoss;
  await store.saveManifest();
  return train;
}

/**
 * A checkpoint left by a training of other data or options cannot be resumed: it is dropped (the adapter it leads to
 * was never finished) and the training starts afresh. `.train-key` in the adapter folder names the training a
 * checkpoint belongs to.
 */
async function dropStaleCheckpoint(adapterDir: string, records: readonly { id: string }[], options: TrainOptions) {
  const keyFile = join(adapterDir, ".train-key");
  const key = recordId(
    "train",
    records.map((record) => record.id),
    options,
  );
  const recorded = await readFile(keyFile, "utf8").catch(() => undefined);
  if (recorded !== undefined && recorded.trim() !== key) {
    await rm(join(adapterDir, "checkpoint"), { recursive: true, force: true });
  }
  await mkdir(adapterDir, { recursive: true });
  await writeFile(keyFile, `${key}\n`);
}

export async function runEngrave(options: RunEngraveOptions): Promise<RunEngraveResult> {
  const { store, constitution } = options;
  const fromAnswers = options.answers.map((answer) => toSftRecord(answer, constitution.assistant, "concise"));
  const identity = (options.includeIdentity ?? true) ? identityRecords(constitution.assistant, "concise") : [];
  const all = [...fromAnswers, ...identity];
  const files = await storeSftRecords(store, all, constitution);
  if (all.length === 0) {
    throw new ConfigError(
      "engrave: no training examples: stage 2 kept no answers and identity exchanges are off. Generate more prompts or check the self-align rejections ('selfalign status')",
      { path: files.sft },
    );
  }
  const train = await trainAdapter(store, all, files.adapterDir, options);
  return { counts: { examples: all.length, fromAnswers: fromAnswers.length, identity: identity.length }, train, files };
}
