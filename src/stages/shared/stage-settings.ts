/**
 * The settings a stage folder's records were made with (model, seed, sampling), kept in its manifest as
 * `extra.settings` by `selfalign stage`, so that one folder never mixes records of two settings and shards of
 * different settings are not merged.
 */
import { ConfigError } from "../../errors/index.js";
import type { Manifest } from "../../run-store/index.js";
import type { StageStore } from "../../run-store/stage-store.js";

/** The settings recorded in a stage folder's manifest, if any. */
export function stageSettingsOf(manifest: Manifest | undefined): Record<string, unknown> | undefined {
  return manifest?.extra.settings as Record<string, unknown> | undefined;
}

/**
 * Refuse to add records made with other settings to a stage folder that holds some: record ids do not depend on
 * sampling, so a resumed stage would otherwise skip what it already has and silently mix two settings. The folder's
 * settings are kept in its manifest (`extra.settings`) when it is first used.
 */
export async function checkStageSettings(store: StageStore, settings: Record<string, unknown>): Promise<void> {
  const canonical = JSON.parse(JSON.stringify(settings)) as Record<string, unknown>;
  const previous = stageSettingsOf(store.manifest);
  // A folder with no finished work yet takes the new settings (a run stopped before its first record).
  if (previous !== undefined && store.doneIds().size > 0) {
    const changed = [...new Set([...Object.keys(previous), ...Object.keys(canonical)])].filter(
      (key) => JSON.stringify(previous[key]) !== JSON.stringify(canonical[key]),
    );
    if (changed.length === 0) return;
    const describe = (value: unknown) => (value === undefined ? "unset" : JSON.stringify(value));
    throw new ConfigError(
      `${store.label} holds records made with other settings (${changed.map((key) => `${key}: ${describe(previous[key])} then, ${describe(canonical[key])} now`).join("; ")}); run with the earlier settings to resume, or use another --run directory (or move ${store.dir} away) to start afresh`,
      { path: store.dir },
    );
  }
  store.manifest.extra.settings = canonical;
  await store.saveManifest();
}
