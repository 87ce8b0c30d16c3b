/**
 * Changed settings take effect in `selfalign run`: a stage whose record-shaping options changed starts afresh, its
 * earlier folders kept under <run>/previous/; options that only say how much to do keep the records; and going back
 * to earlier settings brings their records back without generating them again. Real engine, tiny model, stage 1 only.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { formatPipelineSummary } from "../src/cli/commands/run.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { type LoadedPipelineConfig, parsePipelineConfig } from "../src/pipeline/pipeline-config.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
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

function loaded(selfInstruct: Record<string, unknown>): LoadedPipelineConfig {
  const config = parsePipelineConfig(
    {
      name: "settings",
      model: modelPath,
      runDir: join(dir, "run"),
      engine: { contextSize: 8192, sequences: 2, threads: 1 },
      report: false,
      stages: {
        "self-instruct": { maxRounds: 2, ...selfInstruct },
        "red-team": { skip: true },
        "self-align": { skip: true },
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
