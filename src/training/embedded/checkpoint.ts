/**
 * Training checkpoints: LoRA weights, AdamW moments (safetensors, exact F32), and state.json with the step, the
 * loss curve, the RNG state and the data order. All randomness is derived from (seed, counters), so the counters
 * are the RNG state, and resuming replays exactly what an uninterrupted run would have done.
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../errors/index.js";
import { readSafetensors, writeSafetensors } from "../export/safetensors.js";
import type { LossPoint } from "../trainer.js";
import { asFloat32 } from "./lora.js";
import type { Vec } from "./ops.js";

export interface CheckpointState {
  version: 1;
  /** Optimizer steps completed. */
  step: number;
  totalSteps: number;
  /** Settings and data that must match for a resume to be exact. */
  fingerprint: Record<string, unknown>;
  lossCurve: LossPoint[];
  /** Dropout masks of micro-batch g use seed hash(seed, g); nextMicroBatch is the counter. */
  rng: { seed: number; nextMicroBatch: number };
  /** Micro-batches (example indices) of the epoch in progress. */
  dataOrder: { epoch: number; batches: number[][] };
}

export interface CheckpointArrays {
  lora: Vec[];
  m: Vec[];
  v: Vec[];
}

/** Write atomically: a temporary folder renamed over the old checkpoint. */
export async function saveCheckpoint(dir: string, state: CheckpointState, arrays: CheckpointArrays): Promise<void> {
  const tmp = `${dir}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const tensors = (["lora", "m", "v"] as const).flatMap((kind) =>
    arrays[kind].map((data, i) => ({ name: `${kind}.${i}`, shape: [data.length], data: asFloat32(data) })),
  );
  await writeSafetensors(join(tmp, "state.safetensors"), tensors);
  await writeFile(join(tmp, "state.json"), `${JSON.stringify(state)}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
}

export async function checkpointExists(dir: string): Promise<boolean> {
  return stat(join(dir, "state.json")).then(
    () => true,
    () => false,
  );
}

/** Load into the given arrays (same shapes); returns the state. */
export async function loadCheckpoint(dir: string, arrays: CheckpointArrays): Promise<CheckpointState> {
  const state = JSON.parse(await readFile(join(dir, "state.json"), "utf8")) as CheckpointState;
  const { tensors } = await readSafetensors(join(dir, "state.safetensors"));
  for (const kind of ["lora", "m", "v"] as const) {
    arrays[kind].forEach((target, i) => {
      const saved = tensors.get(`${kind}.${i}`);
      if (!saved || saved.data.length !== target.length) {
        throw new ConfigError(`checkpoint tensor ${kind}.${i} is missing or has the wrong size`, { path: dir });
      }
      target.set(saved.data);
    });
  }
  return state;
}

/** Names the settings that differ between a checkpoint and this run. */
export function fingerprintDifferences(saved: Record<string, unknown>, current: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(saved), ...Object.keys(current)]);
  return [...keys].filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(current[k]));
}
