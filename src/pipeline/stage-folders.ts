/**
 * Which settings the records in a pipeline stage's folders were made with, and keeping folders of other settings
 * aside. Each folder carries its settings key in `.settings-key`, so the folders describe themselves whatever
 * happened to the run (an interruption between two moves, a deleted pipeline.json): a folder made with other
 * settings moves to <run>/previous/<stage>-<key>/, and folders kept there for the current settings move back.
 * Nothing holding records is ever deleted.
 */
import { access, mkdir, readFile, rename, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ConfigError } from "../errors/index.js";
import { writeJsonAtomic } from "../run-store/index.js";

/** The settings key of the records in a stage folder. */
export const settingsKeyFile = ".settings-key";
/** The key of the training a folder's checkpoint belongs to (engrave, verbose-clone). */
export const trainKeyFile = ".train-key";
/** Where folders made with other settings are kept. */
export const previousDirName = "previous";

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

export async function readKeyFile(folder: string, name: string): Promise<string | undefined> {
  try {
    const value = JSON.parse(await readFile(join(folder, name), "utf8")) as { key?: unknown };
    return typeof value.key === "string" ? value.key : undefined;
  } catch {
    return undefined;
  }
}

export async function writeKeyFile(folder: string, name: string, key: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  await writeJsonAtomic(join(folder, name), { key });
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
 * Make `folders` (a stage's folders under `runDir`) hold records made with settings `key` only. A folder without a
 * key (from before keys were kept) is taken to match. Folders that do not exist yet are created with the key.
 */
export async function switchStageFolders(
  runDir: string,
  stage: string,
  folders: readonly string[],
  key: string,
): Promise<FolderSwitch> {
  const outcome: FolderSwitch = {};
  for (const folder of folders) {
    const path = join(runDir, folder);
    if (!(await exists(path))) continue;
    const folderKey = await readKeyFile(path, settingsKeyFile);
    if (folderKey === undefined) await writeKeyFile(path, settingsKeyFile, key);
    else if (folderKey !== key) {
      const target = await asideFor(runDir, stage, folderKey, folder);
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
    if (!(await exists(path))) await writeKeyFile(path, settingsKeyFile, key);
  }
  // Only an empty stash folder goes.
  await rmdir(stash).catch(() => undefined);
  return outcome;
}

/** Label existing folders that have no key with `key` (their settings are known to match). */
export async function labelStageFolders(runDir: string, folders: readonly string[], key: string): Promise<void> {
  for (const folder of folders) {
    const path = join(runDir, folder);
    if ((await exists(path)) && (await readKeyFile(path, settingsKeyFile)) === undefined)
      await writeKeyFile(path, settingsKeyFile, key);
  }
}
