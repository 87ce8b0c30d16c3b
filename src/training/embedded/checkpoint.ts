/**
 * Training checkpoints: the trainable arrays (LoRA, and an objective's own such as the reward head) with their AdamW
 * moments (safetensors, exact F32), and state.json with the step, the loss and eval curves, the RNG state and the
 * data order. All randomness is derived from (seed, counters), so the counters are the RNG state, and resuming
 * replays exactly what an uninterrupted run would have done.
 *
 * A checkpoint made with other settings or data (its fingerprint differs) is never resumed: it is set aside under
 * `stale-checkpoints/<fingerprint hash>/` and put back when a run with those settings comes again.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ConfigError } from "../../errors/index.js";
import { readSafetensors, writeSafetensors } from "../export/safetensors.js";
import type { EvalPoint, LossPoint, TrainKind } from "../trainer.js";
import { asFloat32 } from "./lora.js";
import type { Vec } from "./ops.js";

export interface CheckpointState {
  version: 2;
  kind: TrainKind;
  /** Optimizer steps completed. */
  step: number;
  totalSteps: number;
  /** Settings and data that must match for a resume to be exact. */
  fingerprint: Record<string, unknown>;
  lossCurve: LossPoint[];
  evalCurve: EvalPoint[];
  /** Dropout masks of micro-batch g use seed hash(seed, g); nextMicroBatch is the counter. */
  rng: { seed: number; nextMicroBatch: number };
  /** Micro-batches (item indices) of the epoch in progress. */
  dataOrder: { epoch: number; batches: number[][] };
}

export interface CheckpointArrays {
  /** Trainable arrays in a fixed order: LoRA A, B per module, then the objective's own. */
  params: Vec[];
  m: Vec[];
  v: Vec[];
}

const kinds = ["params", "m", "v"] as const;

/**
 * Write atomically: a complete temporary folder replaces the old checkpoint by renames, and the old one is kept as
 * `<dir>.old` until the new one is in place, so a kill at any moment leaves one readable checkpoint.
 */
export async function saveCheckpoint(
  dir: string,
  state: CheckpointState | Record<string, unknown>,
  arrays: CheckpointArrays,
): Promise<void> {
  const tmp = `${dir}.tmp`;
  const old = `${dir}.old`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const tensors = kinds.flatMap((kind) =>
    arrays[kind].map((data, i) => ({ name: `${kind}.${i}`, shape: [data.length], data: asFloat32(data) })),
  );
  await writeSafetensors(join(tmp, "state.safetensors"), tensors);
  await writeFile(join(tmp, "state.json"), `${JSON.stringify(state)}\n`);
  if (await hasState(dir)) {
    await rm(old, { recursive: true, force: true });
    await rename(dir, old);
  } else {
    await rm(dir, { recursive: true, force: true });
  }
  await rename(tmp, dir);
  await rm(old, { recursive: true, force: true });
}

const hasState = (dir: string) =>
  stat(join(dir, "state.json")).then(
    () => true,
    () => false,
  );

/** The state of the checkpoint in `dir` (after a save interrupted between its renames: the previous one). */
export async function readCheckpointState(dir: string): Promise<unknown> {
  if (!(await hasState(dir)) && (await hasState(`${dir}.old`))) {
    await rm(dir, { recursive: true, force: true });
    await rename(`${dir}.old`, dir);
  }
  if (!(await hasState(dir))) return undefined;
  const path = join(dir, "state.json");
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new ConfigError(`the checkpoint state is not valid JSON (${(error as Error).message}); delete ${dir}`, {
      path,
    });
  }
}

/** Whether a read state is one this version of the trainer writes (older ones are stale). */
export function isCurrentState(state: unknown): state is CheckpointState {
  return typeof state === "object" && state !== null && (state as { version?: unknown }).version === 2;
}

/** Load the arrays into the given ones (same shapes). */
export async function loadCheckpointArrays(dir: string, arrays: CheckpointArrays): Promise<void> {
  const { tensors } = await readSafetensors(join(dir, "state.safetensors"));
  for (const kind of kinds) {
    arrays[kind].forEach((target, i) => {
      const saved = tensors.get(`${kind}.${i}`);
      if (!saved || saved.data.length !== target.length) {
        throw new ConfigError(`checkpoint tensor ${kind}.${i} is missing or has the wrong size`, { path: dir });
      }
      target.set(saved.data);
    });
  }
}

/** Names the settings that differ between a checkpoint and this run. */
export function fingerprintDifferences(saved: Record<string, unknown>, current: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(saved), ...Object.keys(current)]);
  return [...keys].filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(current[k]));
}

/** SHA-256 (16 hex digits) of a fingerprint, independent of key order: the name of its set-aside folder. */
export function fingerprintHash(fingerprint: Record<string, unknown>): string {
  const sorted = Object.fromEntries(Object.entries(fingerprint).sort(([a], [b]) => a.localeCompare(b)));
  return createHash("sha256").update(JSON.stringify(sorted)).digest("hex").slice(0, 16);
}

/** `<output>/stale-checkpoints/<hash>`: where a checkpoint with that fingerprint waits. */
export function setAsidePath(checkpointDir: string, fingerprint: Record<string, unknown>): string {
  return join(dirname(checkpointDir), "stale-checkpoints", fingerprintHash(fingerprint));
}

/** Move the checkpoint to its set-aside folder (replacing an older one with the same settings); returns it. */
export async function setAsideCheckpoint(checkpointDir: string, fingerprint: Record<string, unknown>): Promise<string> {
  const target = setAsidePath(checkpointDir, fingerprint);
  await mkdir(dirname(target), { recursive: true });
  await rm(target, { recursive: true, force: true });
  await rename(checkpointDir, target);
  return target;
}

/** Put back the checkpoint set aside for `fingerprint`, if there is one; returns where it came from. */
export async function restoreSetAside(
  checkpointDir: string,
  fingerprint: Record<string, unknown>,
): Promise<string | undefined> {
  const source = setAsidePath(checkpointDir, fingerprint);
  if (!(await hasState(source))) return undefined;
  await rm(checkpointDir, { recursive: true, force: true });
  await rename(source, checkpointDir);
  return source;
}
