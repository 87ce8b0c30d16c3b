import { createHash } from "node:crypto";
import { ConfigError } from "../errors/index.js";

/** One slice of a stage's inputs: shard `index` of `count` (index counts from 0). */
export interface Shard {
  index: number;
  count: number;
}

/** Parse the `--shard i/n` flag. */
export function parseShard(text: string): Shard {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = match ? Number(match[1]) : Number.NaN;
  const count = match ? Number(match[2]) : Number.NaN;
  if (!match || count < 1 || index >= count) {
    throw new ConfigError(
      `--shard must look like 0/4 (shard index / shard count, index from 0 to count-1), got "${text}"`,
      { field: "shard" },
    );
  }
  return { index, count };
}

/** Whether the record or input with this id belongs to `shard`. Across index 0..count-1 each id is in exactly one. */
export function inShard(id: string, shard: Shard | undefined): boolean {
  if (!shard || shard.count === 1) return true;
  // Hash again so ids that are not themselves uniform hashes still spread evenly.
  const bucket = createHash("sha256").update(id).digest().readUInt32BE(0) % shard.count;
  return bucket === shard.index;
}

/** Folder name of a shard's output inside the stage folder: `shard-0-of-4`. */
export function shardDirName(shard: Shard): string {
  return `shard-${shard.index}-of-${shard.count}`;
}

/** Inverse of {@link shardDirName}; undefined for other names. */
export function parseShardDirName(name: string): Shard | undefined {
  const match = /^shard-(\d+)-of-(\d+)$/.exec(name);
  if (!match) return undefined;
  const index = Number(match[1]);
  const count = Number(match[2]);
  return index < count ? { index, count } : undefined;
}

export function formatShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}
