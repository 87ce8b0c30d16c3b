/**
 * The one settings guard of stage folders. A stage's settings are what shapes its records (its options minus those
 * that only say how much to do, the upstream stages' settings keys, the model, the seed, the constitution); their
 * hash is the folder's settings key, kept with the settings themselves in `.settings-key` and written when the
 * folder is opened, so a folder describes itself whatever happened to the run. Record ids do not depend on settings,
 * so records of two settings must never share a folder. One policy per caller:
 * - `selfalign run` moves a folder made with other settings to <run>/previous/<stage>-<key>/ and brings back a folder
 *   kept there for the current settings (nothing holding records is ever deleted);
 * - `selfalign stage` refuses, naming the settings that differ;
 * - `selfalign merge` refuses shards made with different settings.
 * A folder without a key (made before keys were kept) or without finished work takes the current settings.
 */
import { access, mkdir, readFile, rename, rmdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ConfigError } from "../errors/index.js";
import { canonicalJson, recordId, stageFiles, writeJsonAtomic } from "../run-store/index.js";
import type { StageInstance } from "./stage-context.js";

/** The file holding a folder's settings key and settings. */
export const settingsKeyFile = ".settings-key";
/** Where folders made with other settings are kept. */
export const previousDirName = "previous";

export type StageSettings = Record<string, unknown>;

export interface FolderSettings {
  key: string;
  /** Absent in folders labelled before the settings were kept with the key. */
  settings?: StageSettings;
}

/** What, besides a stage's own options, shapes its records. Undefined entries are left out. */
export interface SettingsContext {
  /** The identity of the generator (stages with the "generator" role). */
  model?: string;
  /** The training base (stages that train or load it as a teacher). */
  trainBase?: string;
  /** The shaping options of the stage's group (inside a repeated group). */
  group?: Record<string, unknown>;
  seed: number;
  constitution: string;
  /** The upstream stages' settings keys, in the order of `upstream`. */
  upstream: Array<string | null>;
}

/** A stage instance's settings: its options minus amount options, its round, and the context. */
export function stageSettings(instance: StageInstance, context: SettingsContext): StageSettings {
  const amounts = new Set(instance.definition.amountOptions);
  const shaping = Object.fromEntries(Object.entries(instance.options).filter(([name]) => !amounts.has(name)));
  return JSON.parse(
    canonicalJson({ ...shaping, ...(instance.round ? { round: instance.round.index } : {}), ...context }),
  ) as StageSettings;
}

/** The settings key of `settings` (defaults resolved, so an option given with its default is the same setting). */
export function settingsKey(settings: StageSettings): string {
  return recordId("stage-settings", settings);
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

export async function readFolderSettings(folder: string): Promise<FolderSettings | undefined> {
  try {
    const value = JSON.parse(await readFile(join(folder, settingsKeyFile), "utf8")) as {
      key?: unknown;
      settings?: unknown;
    };
    if (typeof value.key !== "string") return undefined;
    const settings =
      value.settings && typeof value.settings === "object" ? (value.settings as StageSettings) : undefined;
    return { key: value.key, ...(settings ? { settings } : {}) };
  } catch {
    return undefined;
  }
}

export async function writeFolderSettings(folder: string, settings: StageSettings): Promise<string> {
  const key = settingsKey(settings);
  await mkdir(folder, { recursive: true });
  await writeJsonAtomic(join(folder, settingsKeyFile), { key, settings: JSON.parse(canonicalJson(settings)) });
  return key;
}

/** The settings that differ, named: `sampling: {"maxTokens":16} then, {"maxTokens":12} now`. */
export function describeDifferences(previous: FolderSettings, current: StageSettings): string {
  if (!previous.settings) return `settings key ${previous.key} then, ${settingsKey(current)} now`;
  const before = JSON.parse(canonicalJson(previous.settings)) as StageSettings;
  const now = JSON.parse(canonicalJson(current)) as StageSettings;
  const show = (value: unknown) => (value === undefined ? "unset" : JSON.stringify(value));
  return [...new Set([...Object.keys(before), ...Object.keys(now)])]
    .filter((name) => JSON.stringify(before[name]) !== JSON.stringify(now[name]))
    .map((name) => `${name}: ${show(before[name])} then, ${show(now[name])} now`)
    .join("; ");
}

/** Whether a folder holds finished work (records, rejections or finished inputs). */
async function hasWork(folder: string): Promise<boolean> {
  for (const file of [stageFiles.records, stageFiles.rejected, stageFiles.doneItems]) {
    if (((await stat(join(folder, file)).catch(() => undefined))?.size ?? 0) > 0) return true;
  }
  return false;
}

/**
 * `selfalign stage`'s policy for the one folder it writes (the stage folder or a shard folder): go on when it holds
 * records of the same settings or none; refuse, naming the differences, when it holds records of other settings.
 */
export async function refuseOtherSettings(folder: string, label: string, settings: StageSettings): Promise<string> {
  const previous = await readFolderSettings(folder);
  if (previous && previous.key !== settingsKey(settings) && (await hasWork(folder))) {
    throw new ConfigError(
      `${label} holds records made with other settings (${describeDifferences(previous, settings)}); run with the earlier settings to resume, or use another --run directory (or move ${folder} away) to start afresh`,
      { path: folder },
    );
  }
  return writeFolderSettings(folder, settings);
}

async function move(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true });
  try {
    await rename(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError(
      `could not move ${from} to ${to} (${code}); move it there yourself (or remove it) and run again`,
      { path: from, cause: error },
    );
  }
}

/** <run>/previous/<stage>-<key> for `folder`, or a fresh variant of it when that place is taken. */
async function asideFor(runDir: string, stage: string, key: string, folder: string): Promise<string> {
  const base = join(runDir, previousDirName, `${stage}-${key.slice(0, 16)}`);
  if (!(await exists(join(base, folder)))) return join(base, folder);
  for (let n = 2; ; n++) {
    const candidate = join(`${base}.${n}`, folder);
    if (!(await exists(candidate))) return candidate;
  }
}

export interface FolderSwitch {
  /** Where folders made with other settings went. */
  movedAside?: string;
  /** Where folders made earlier with the current settings came back from. */
  restoredFrom?: string;
}

/**
 * `selfalign run`'s policy: make `folders` (a stage's folders under `runDir`) hold records made with `settings`
 * only. Folders of other settings move aside; folders kept aside for these settings come back; a folder without a
 * key is taken to match and labelled. Every folder ends up labelled with the settings.
 */
export async function switchStageFolders(
  runDir: string,
  stage: string,
  folders: readonly string[],
  settings: StageSettings,
): Promise<FolderSwitch> {
  const key = settingsKey(settings);
  const outcome: FolderSwitch = {};
  for (const folder of folders) {
    const path = join(runDir, folder);
    if (!(await exists(path))) continue;
    const previous = await readFolderSettings(path);
    if (previous !== undefined && previous.key !== key) {
      const target = await asideFor(runDir, stage, previous.key, folder);
      await move(path, target);
      outcome.movedAside = dirname(target);
    }
  }
  const stash = join(runDir, previousDirName, `${stage}-${key.slice(0, 16)}`);
  for (const folder of folders) {
    const path = join(runDir, folder);
    if (!(await exists(path)) && (await exists(join(stash, folder)))) {
      await move(join(stash, folder), path);
      outcome.restoredFrom = stash;
    }
    await writeFolderSettings(path, settings);
  }
  // Only an empty stash folder goes.
  await rmdir(stash).catch(() => undefined);
  return outcome;
}

/** Label folders that have no key (made before keys were kept) with `settings`, which are known to match. */
export async function labelStageFolders(runDir: string, folders: readonly string[], settings: StageSettings) {
  for (const folder of folders) {
    const path = join(runDir, folder);
    if ((await exists(path)) && (await readFolderSettings(path)) === undefined)
      await writeFolderSettings(path, settings);
  }
}

/** `selfalign merge`'s policy: the shards' settings, which must agree (folders without settings are left out). */
export async function sharedShardSettings(
  stage: string,
  shardDirs: readonly string[],
): Promise<FolderSettings | undefined> {
  const byKey = new Map<string, { settings: FolderSettings; dirs: string[] }>();
  for (const dir of shardDirs) {
    const settings = await readFolderSettings(dir);
    if (!settings) continue;
    const entry = byKey.get(settings.key) ?? { settings, dirs: [] };
    entry.dirs.push(dir);
    byKey.set(settings.key, entry);
  }
  if (byKey.size > 1) {
    const described = [...byKey.values()].map(
      (entry) => `${entry.dirs.join(", ")}: ${JSON.stringify(entry.settings.settings ?? entry.settings.key)}`,
    );
    throw new ConfigError(
      `the shards of "${stage}" were made with different settings: ${described.join("; ")}. Re-run the odd shards with the same settings before merging`,
      { path: dirname(shardDirs[0]!) },
    );
  }
  return [...byKey.values()][0]?.settings;
}
