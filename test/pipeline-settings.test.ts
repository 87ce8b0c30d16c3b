/**
 * Changed settings take effect in `selfalign run`: a stage whose record-shaping options changed starts afresh, its
 * earlier folders kept under <run>/previous/; options that only say how much to do keep the records; and going back
 * to earlier settings brings their records back without generating them again. Real engine, tiny model, stage 1 only.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPipelineSummary } from "../src/cli/commands/run.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { type LoadedPipelineConfig, parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
import {
  readFolderSettings,
  settingsKey,
  settingsKeyFile,
  switchStageFolders,
  writeFolderSettings,
} from "../src/pipeline/stage-settings.js";
import { readJsonl, readManifest } from "../src/run-store/index.js";

let dir: string;
let modelPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-settings-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, { layers: 2, dim: 64, heads: 4, kvHeads: 2, ffn: 128, contextLength: 8192, seed: 2 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function loaded(
  selfInstruct: Record<string, unknown>,
  runName = "run",
  selfAlign: Record<string, unknown> = { skip: true },
): LoadedPipelineConfig {
  const config = parsePipelineConfig(
    {
      name: "settings",
      model: modelPath,
      runDir: join(dir, runName),
      // Room for the stage-2 meta-prompt in byte tokens (about 8,600; the check before work measures it).
      engine: { contextSize: 12288, sequences: 2, threads: 1 },
      report: false,
      stages: {
        "self-instruct": { maxRounds: 2, ...selfInstruct },
        "red-team": { skip: true },
        "self-align": selfAlign,
        engrave: { skip: true },
        "verbose-clone": { skip: true },
      },
    },
    "test config",
  );
  return { config, baseDir: dir };
}

/** What a stage-1 folder holds: finished rounds, records (kept and rejected) and the tokens its manifest counts. */
async function stageOne(folder: string) {
  const read = async (file: string) =>
    (await readJsonl<{ id: string }>(join(folder, file))).records.sort((a, b) => a.id.localeCompare(b.id));
  const manifest = (await readManifest(join(folder, "manifest.json")))!;
  return {
    done: await read("done-items.jsonl"),
    records: [...(await read("records.jsonl")), ...(await read("rejected.jsonl"))],
    completionTokens: manifest.usage.completionTokens,
  };
}

it("starts a stage afresh when its sampling changes, keeps records when only the amount changes, and restores", async () => {
  const runDir = join(dir, "run");
  const first = await runPipeline({ loaded: loaded({ target: 4, sampling: { maxTokens: 64 } }) });
  expect(first.usage.completionTokens).toBeGreaterThan(0);
  const original = await stageOne(join(runDir, "self-instruct"));
  expect(original.done.length).toBeGreaterThan(0);
  expect(original.completionTokens).toBe(first.usage.completionTokens);

  // Another sampling setting: new records; the old folder is kept, not used.
  const changed = await runPipeline({ loaded: loaded({ target: 4, sampling: { maxTokens: 40 } }) });
  const moved = changed.stages[0]?.movedAside;
  expect(moved).toMatch(/previous[/\\]self-instruct-/);
  expect(formatPipelineSummary(changed)).toContain(`the earlier records were moved to ${moved}`);
  expect(await stageOne(join(moved!, "self-instruct"))).toEqual(original);
  expect(changed.usage.completionTokens).toBeGreaterThan(0);
  const regenerated = await stageOne(join(runDir, "self-instruct"));
  // Fresh: only this run's tokens (40 per request rather than 64).
  expect(regenerated.completionTokens).toBe(changed.usage.completionTokens);
  expect(regenerated.completionTokens).toBeLessThan(original.completionTokens);

  // Only the amount changes: the records stay and nothing is moved.
  const more = await runPipeline({ loaded: loaded({ target: 5, sampling: { maxTokens: 40 } }) });
  expect(more.stages[0]?.movedAside).toBeUndefined();
  const afterMore = await stageOne(join(runDir, "self-instruct"));
  for (const item of regenerated.done) expect(afterMore.done).toContainEqual(item);
  expect(afterMore.completionTokens).toBe(regenerated.completionTokens + more.usage.completionTokens);

  // Back to the first settings: the first records come back and nothing is generated again.
  const back = await runPipeline({ loaded: loaded({ target: 4, sampling: { maxTokens: 64 } }) });
  expect(back.stages[0]?.restoredFrom).toMatch(/previous[/\\]self-instruct-/);
  expect(back.stages[0]?.movedAside).toMatch(/previous[/\\]self-instruct-/);
  expect(back.usage.completionTokens).toBe(0);
  expect(await stageOne(join(runDir, "self-instruct"))).toEqual(original);
  expect(await readdir(join(runDir, "previous"))).toHaveLength(1);
});

it("keeps every folder when pipeline.json is lost, and treats folders from before keys as matching once", async () => {
  const runName = "lost-state";
  const runDir = join(dir, runName);
  const a = { target: 4, sampling: { maxTokens: 64 } };
  const b = { target: 4, sampling: { maxTokens: 40 } };
  await runPipeline({ loaded: loaded(a, runName) });
  const original = await stageOne(join(runDir, "self-instruct"));
  await runPipeline({ loaded: loaded(b, runName) });
  const second = await stageOne(join(runDir, "self-instruct"));
  // pipeline.json gone (a way people force a re-run): back to A, B's records are kept, A's come back.
  await rm(join(runDir, "pipeline.json"));
  const back = await runPipeline({ loaded: loaded(a, runName) });
  expect(back.stages[0]?.restoredFrom).toBeDefined();
  expect(await stageOne(join(runDir, "self-instruct"))).toEqual(original);
  expect(await stageOne(join(back.stages[0]!.movedAside!, "self-instruct"))).toEqual(second);

  // A folder without a key (made before keys were kept) is taken to match while the run is up to date, and labelled,
  // so a later change of settings still moves it aside instead of reusing its records.
  await rm(join(runDir, "self-instruct", settingsKeyFile));
  const same = await runPipeline({ loaded: loaded(a, runName) });
  expect(same.stages[0]?.status).toBe("up-to-date");
  const changed = await runPipeline({ loaded: loaded(b, runName) });
  expect(changed.stages[0]?.movedAside).toBeDefined();
  expect(changed.usage.completionTokens).toBe(0); // B's records came back from previous/
});

it("a skipped stage's edited options do not touch the stages after it", async () => {
  const runName = "skipped-upstream";
  const first = await runPipeline({
    loaded: loaded({ target: 4, sampling: { maxTokens: 64 } }, runName, { sampling: { maxTokens: 8 } }),
  });
  // SELF-ALIGN's five stages; SALMON's six and the I-SHEEP group after them are skipped by default.
  expect(first.stages.map((stage) => stage.status)).toEqual([
    "ran",
    "skipped",
    "ran",
    "skipped",
    "skipped",
    ...Array(7).fill("skipped"),
  ]);
  const edited = await runPipeline({
    loaded: loaded({ skip: true, target: 4, sampling: { maxTokens: 40 } }, runName, { sampling: { maxTokens: 8 } }),
  });
  expect(edited.stages[2]).toMatchObject({ stage: "self-align", status: "up-to-date" });
  expect(edited.stages[2]?.movedAside).toBeUndefined();
});

describe("switchStageFolders", () => {
  it("never overwrites a kept folder, labels key-less folders, and restores what is missing", async () => {
    const runDir = join(dir, "folders");
    const x = { option: "x" };
    const y = { option: "y" };
    const aside = (settings: object) => `previous/st-${settingsKey(settings as Record<string, unknown>).slice(0, 16)}`;
    const write = async (folder: string, settings: Record<string, unknown> | undefined, text: string) => {
      await mkdir(join(runDir, folder), { recursive: true });
      await writeFile(join(runDir, folder, "records.jsonl"), text);
      if (settings) await writeFolderSettings(join(runDir, folder), settings);
    };
    // Settings x were used twice (an older copy is already kept under previous/).
    await write(`${aside(x)}/one`, x, "older x\n");
    await write("one", x, "newer x\n");
    await write("two", undefined, "no key\n");
    const moved = await switchStageFolders(runDir, "st", ["one", "two"], y);
    expect(moved.movedAside).toBe(join(runDir, `${aside(x)}.2`));
    expect(await readFile(join(runDir, `${aside(x)}/one/records.jsonl`), "utf8")).toBe("older x\n");
    expect(await readFile(join(runDir, `${aside(x)}.2/one/records.jsonl`), "utf8")).toBe("newer x\n");
    // "two" had no key: it is kept and labelled; "one" starts empty, labelled with the new settings.
    expect(await readFolderSettings(join(runDir, "two"))).toEqual({ key: settingsKey(y), settings: y });
    expect((await readFolderSettings(join(runDir, "one")))?.key).toBe(settingsKey(y));
    // Back to x: "one" comes back from its place; "two" (labelled y) moves aside.
    await rm(join(runDir, "one"), { recursive: true });
    const back = await switchStageFolders(runDir, "st", ["one", "two"], x);
    expect(back.restoredFrom).toBe(join(runDir, aside(x)));
    expect(await readFile(join(runDir, "one/records.jsonl"), "utf8")).toBe("older x\n");
    expect(await readFile(join(runDir, `${aside(y)}/two/records.jsonl`), "utf8")).toBe("no key\n");
    expect(await readFile(join(runDir, `${aside(x)}.2/one/records.jsonl`), "utf8")).toBe("newer x\n");
  });
});
