/**
 * The whole pipeline end to end on a tiny random-weight GGUF (the `selfalign demo` config): every stage runs through
 * the real embedded engine and trainer, both adapters are written, the final adapter lowers the loss of its training
 * set in node-llama-cpp, and a run interrupted at a random point in each stage, then resumed, ends with exactly the
 * records and adapter of an uninterrupted run.
 */
import { readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { AbortedError } from "../src/errors/index.js";
import { seededRandom } from "../src/gguf/index.js";
import { prepareDemo } from "../src/pipeline/demo.js";
import { runPipeline } from "../src/pipeline/run-pipeline.js";
import type { ProgressEvent } from "../src/progress/progress-event.js";
import { readJsonl } from "../src/run-store/index.js";

const root = join(process.cwd(), ".tmp", `pipeline-test-${process.pid}`);
afterAll(async () => {
  if (!process.env.KEEP_TEST_FILES) await rm(root, { recursive: true, force: true });
});

const stageFolders = [
  "self-instruct",
  "red-team-topics",
  "red-team",
  "self-align",
  "engrave",
  "verbose-clone",
  "verbose-clone-sft",
];

/** Records and rejections of every stage, sorted by id, with the run's own folder replaced so two runs compare. */
async function snapshot(runDir: string, folder: string) {
  const out: Record<string, unknown> = {};
  for (const stage of stageFolders) {
    for (const file of ["records.jsonl", "rejected.jsonl"]) {
      const { records } = await readJsonl(join(runDir, stage, file));
      const text = JSON.stringify(records.sort((a, b) => a.id.localeCompare(b.id)));
      out[`${stage}/${file}`] = JSON.parse(text.split(folder).join("<run>"));
    }
  }
  return out;
}

describe("selfalign demo pipeline", () => {
  it("runs every stage, writes both adapters, and the final adapter lowers the loss on its verbose set", async () => {
    const loaded = await prepareDemo({ dir: join(root, "a") });
    const result = await runPipeline({ loaded });
    expect(result.alreadyFinished).toBe(false);
    expect(result.stages.map((s) => [s.stage, s.status])).toEqual([
      ["self-instruct", "ran"],
      ["red-team", "ran"],
      ["self-align", "ran"],
      ["engrave", "ran"],
      ["verbose-clone", "ran"],
      ["isheep", "skipped"],
    ]);
    const engraveAdapter = result.adapters.engrave!;
    const finalAdapter = result.finalAdapter!;
    expect((await stat(engraveAdapter)).size).toBeGreaterThan(0);
    expect((await stat(finalAdapter)).size).toBeGreaterThan(0);
    expect((await stat(result.reportPath!)).size).toBeGreaterThan(0);

    // The final adapter, loaded by node-llama-cpp, assigns its training set a higher likelihood than the base.
    const { records } = await readJsonl<{ id: string; prompt: string; completion: string }>(
      join(result.runDir, "verbose-clone-sft", "records.jsonl"),
    );
    expect(records.length).toBeGreaterThan(0);
    const modelPath = loaded.config.model as string;
    const meanLogprob = async (lora?: string) => {
      const backend = await createLlamaCppBackend({
        model: modelPath,
        contextSize: 16384,
        sequences: 1,
        ...(lora ? { lora: [{ path: lora }] } : {}),
      });
      try {
        let total = 0;
        let tokens = 0;
        for (const record of records) {
          const [score] = await backend.score(record.prompt, [record.completion]);
          total += score!.logprob;
          tokens += score!.tokens.length;
        }
        return total / tokens;
      } finally {
        await backend.close();
      }
    };
    const base = await meanLogprob();
    const tuned = await meanLogprob(finalAdapter);
    expect(tuned).toBeGreaterThan(base + 0.05);

    // Running the finished run again does nothing and says so.
    const again = await runPipeline({ loaded });
    expect(again.alreadyFinished).toBe(true);
    expect(again.stages.every((s) => s.status === "up-to-date")).toBe(true);

    // The chat format works with the result (an answer comes back through the engraved prompt).
    const chat = await createLlamaCppBackend({
      model: modelPath,
      contextSize: 4096,
      sequences: 1,
      lora: [{ path: finalAdapter }],
    });
    const [reply] = await completeAll(chat, [{ prompt: records[0]!.prompt, maxTokens: 8, temperature: 0 }]);
    await chat.close();
    expect(reply!.completions[0]!.tokenCount).toBeGreaterThan(0);
  });

  it("interrupted at a random point in each stage and resumed, ends with the records and adapter of an uninterrupted run", async () => {
    // llama.cpp's numbers depend on batching and cache history; the deterministic engine removes that, so the
    // comparison checks resume itself. Both runs use it.
    const reference = await prepareDemo({ dir: join(root, "a-deterministic"), deterministic: true });
    await runPipeline({ loaded: reference });
    const loaded = await prepareDemo({ dir: join(root, "b"), deterministic: true });
    const random = seededRandom(Date.now() % 100_000);
    const interrupted = new Set<string>();
    const seen = new Map<string, number>();
    const threshold = new Map<string, number>();
    let current = "";
    let attempts = 0;
    for (;;) {
      attempts++;
      const controller = new AbortController();
      const onProgress = (event: ProgressEvent) => {
        if (event.type === "stage-start") current = event.stage;
        if (event.type !== "record-end" && event.type !== "train-step") return;
        const stage = event.type === "record-end" ? event.stage : `${current}/train`;
        if (interrupted.has(stage)) return;
        const count = (seen.get(stage) ?? 0) + 1;
        seen.set(stage, count);
        if (!threshold.has(stage)) threshold.set(stage, 1 + Math.floor(random() * 3));
        if (count >= threshold.get(stage)!) {
          interrupted.add(stage);
          controller.abort(new AbortedError());
        }
      };
      try {
        await runPipeline({ loaded, onProgress, signal: controller.signal });
        break;
      } catch (error) {
        if (!(error instanceof AbortedError)) throw error;
      }
      expect(attempts).toBeLessThan(20);
    }
    // At least one interruption in generation and in each training run.
    expect([...interrupted].some((s) => s.endsWith("/train"))).toBe(true);
    expect(interrupted.size).toBeGreaterThanOrEqual(4);

    const a = join(root, "a-deterministic");
    const b = join(root, "b");
    expect(await snapshot(join(b, "run"), b)).toEqual(await snapshot(join(a, "run"), a));
    const finalA = await readFile(join(a, "run", "verbose-clone", "adapter", "adapter.gguf"));
    const finalB = await readFile(join(b, "run", "verbose-clone", "adapter", "adapter.gguf"));
    expect(finalB.equals(finalA)).toBe(true);
  });
});
