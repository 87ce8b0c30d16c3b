/**
 * Stage 3, principle engraving (method-spec A.5): build the SFT set from the kept self-aligned answers (principles,
 * exemplars and internal thoughts removed; the constitution's identity exchanges added), export it as Alpaca and chat
 * JSONL, and train a LoRA adapter on the base model with the configured trainer.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Constitution } from "../../constitution/index.js";
import { AbortedError, ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import type { StageStore } from "../../run-store/index.js";
import type { Trainer, TrainOptions, TrainResult } from "../../training/trainer.js";
import { type AnswerRecord, identityRecords, type SftRecord, toAlpaca, toMessages, toSftRecord } from "./build-sft.js";

export const engraveStage = "engrave";

export interface RunEngraveOptions {
  /** The `engrave` stage store: SFT records go to its records.jsonl. */
  store: StageStore;
  /** Kept stage-2 answers. */
  answers: readonly AnswerRecord[];
  constitution: Constitution;
  /** Add the constitution's "who are you" exchanges. Default true. */
  includeIdentity?: boolean;
  trainer: Trainer;
  /** Base model the adapter is trained on (a GGUF for the embedded trainer). */
  base: string;
  trainOptions?: TrainOptions;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
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

/** Append SFT records not yet stored and (re)write the Alpaca / chat exports from the whole set. */
export async function storeSftRecords(store: StageStore, records: SftRecord[], constitution: Constitution) {
  for (const record of records) if (!store.isDone(record.id)) await store.appendRecord({ ...record });
  await store.saveManifest();
  const all = await store.readRecords<SftRecord>();
  const files = sftFiles(store.dir);
  // Exports in the field's formats (no ids), read unchanged by Alpaca- and chat-SFT tooling.
  const jsonLines = (rows: unknown[]) => rows.map((row) => `${JSON.stringify(row)}\n`).join("");
  await writeFile(files.alpaca, jsonLines(all.map(toAlpaca)));
  await writeFile(files.messages, jsonLines(all.map((r) => toMessages(r, constitution.assistant))));
  return { all, files };
}

export async function runEngrave(options: RunEngraveOptions): Promise<RunEngraveResult> {
  const { store, constitution, signal } = options;
  const fromAnswers = options.answers.map((answer) => toSftRecord(answer, constitution.assistant, "concise"));
  const identity = (options.includeIdentity ?? true) ? identityRecords(constitution.assistant, "concise") : [];
  const { all, files } = await storeSftRecords(store, [...fromAnswers, ...identity], constitution);
  if (all.length === 0) {
    throw new ConfigError(
      "engrave: no training examples: stage 2 kept no answers and identity exchanges are off. Generate more prompts or check the self-align rejections ('selfalign status')",
      { path: files.sft },
    );
  }
  if (signal?.aborted) throw new AbortedError();
  const train = await options.trainer.train({
    base: options.base,
    examples: all.map(({ prompt, completion }) => ({ prompt, completion })),
    output: files.adapterDir,
    options: { resume: true, ...options.trainOptions },
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(signal ? { signal } : {}),
  });
  store.manifest.extra.adapter = train.adapterPath;
  store.manifest.extra.finalLoss = train.finalLoss;
  await store.saveManifest();
  return { counts: { examples: all.length, fromAnswers: fromAnswers.length, identity: identity.length }, train, files };
}
