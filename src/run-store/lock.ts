/**
 * The run lock: a file holding the owner's pid and hostname, created with O_EXCL so exactly one process gets it.
 * A lock left by a process that died (same host, pid gone) is taken over; any other holder is an error.
 */
import { hostname } from "node:os";
import { link, rename, unlink, writeFile } from "node:fs/promises";
import { ConfigError } from "../errors/index.js";
import { readTextFile } from "./json-file.js";

export interface LockInfo {
  pid: number;
  hostname: string;
  startedAt: string;
}

export interface LockState {
  path: string;
  holder: LockInfo | undefined;
  /** Whether the holder is known to be running: true (alive), false (dead), undefined (another host: unknown). */
  alive: boolean | undefined;
}

/** Read a lock file; undefined when there is none. An unreadable lock reads as a holder with pid 0. */
export async function readLock(path: string): Promise<LockState | undefined> {
  const text = await readTextFile(path);
  if (text === undefined) return undefined;
  let holder: LockInfo | undefined;
  try {
    const value = JSON.parse(text) as Partial<LockInfo>;
    if (typeof value.pid === "number" && typeof value.hostname === "string") {
      holder = { pid: value.pid, hostname: value.hostname, startedAt: String(value.startedAt ?? "") };
    }
  } catch {
    // A lock torn by a crash while being written: treated as held by nobody alive below.
  }
  return { path, holder, alive: holder ? isAlive(holder) : false };
}

function isAlive(holder: LockInfo): boolean | undefined {
  if (holder.hostname !== hostname()) return undefined;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Take the lock at `path` or throw a ConfigError naming the holder. */
export async function acquireLock(path: string, runDir: string): Promise<LockInfo> {
  const info: LockInfo = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
  for (let attempt = 0; attempt < 5; attempt++) {
    // Write the whole lock to a private file, then link it into place: the lock appears complete or not at all.
    const temporary = `${path}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify(info)}\n`);
    try {
      await link(temporary, path);
      return info;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    } finally {
      await unlink(temporary).catch(() => undefined);
    }
    const state = await readLock(path);
    if (!state) continue;
    if (state.alive !== false) throw heldError(state, runDir);
    // Stale: move it aside atomically (only one taker's rename succeeds), then try to create ours again.
    try {
      await rename(path, `${path}.stale-${process.pid}`);
      await unlink(`${path}.stale-${process.pid}`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  throw new ConfigError(`could not take the run lock ${path}: other processes keep creating it`, { path });
}

function heldError(state: LockState, runDir: string): ConfigError {
  const holder = state.holder!;
  const who = `process ${holder.pid} on ${holder.hostname}${holder.startedAt ? ` (since ${holder.startedAt})` : ""}`;
  const how =
    state.alive === undefined
      ? `If that process is no longer running, delete ${state.path} and run again.`
      : `Wait for it to finish or stop it (kill ${holder.pid}), then run again; the run resumes where it stopped.`;
  return new ConfigError(`run is in use by ${who}; two processes cannot write one run. ${how}`, { path: runDir });
}

/** Remove the lock if it is still ours. */
export async function releaseLock(path: string, info: LockInfo): Promise<void> {
  const state = await readLock(path);
  if (state?.holder?.pid === info.pid && state.holder.hostname === info.hostname) {
    await unlink(path).catch(() => undefined);
  }
}
