/**
 * One I-SHEEP round on the ~19M-parameter benchmark model: wall time of each member, run one after the other as
 * `selfalign stage <member> --round 1` does (each loads its model; the load time is printed apart), split into
 * generate (prompts) / answer / filter / rate / keep / train, with each part's share of the round. Random weights need
 * the tests' grammars to produce parseable task lists and ratings; the counts are small and fixed, so the figure is
 * the pipeline's own cost per request, not a model's. The probe eval is off (it is answer + rate again).
 * Run: npx tsx bench/isheep-round.ts [--prompts 16] [--answer-tokens 96] [--threads 2]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { runStageCommand } from "../src/cli/commands/stage.js";
import { readJsonl } from "../src/run-store/index.js";
import { answerGrammar, promptGrammar, ratingGrammar } from "../test/fixtures/isheep-pipeline.js";
import { numberFlag, withBenchModel } from "./lib/bench-model.js";

const prompts = numberFlag("prompts", 16);
const answerTokens = numberFlag("answer-tokens", 96);
const threads = numberFlag("threads", 2);

await withBenchModel("F32", async ({ path, parameterCount }) => {
  const dir = await mkdtemp(join(tmpdir(), "bench-isheep-"));
  try {
    const loadStart = performance.now();
    const backend = await createLlamaCppBackend({ model: path, threads });
    await backend.close();
    const load = (performance.now() - loadStart) / 1000;
    console.log(
      `model: ${(parameterCount / 1e6).toFixed(1)}M parameters (F32), ${prompts} prompts to keep, answers up to ${answerTokens} tokens, ${threads} training threads; model load ${load.toFixed(2)} s (in each generating member's time)`,
    );
    const run = join(dir, "run");
    const common = { run, model: `llama-cpp:${path}`, trainBase: path, round: 1 };
    const members: Array<[part: string, stage: string, options: Record<string, unknown>]> = [
      [
        "generate",
        "isheep-prompts",
        {
          target: String(prompts),
          maxCalls: String(4 * prompts),
          samplingGrammar: promptGrammar,
          samplingMaxTokens: "200",
        },
      ],
      ["answer", "isheep-answers", { samplingGrammar: answerGrammar, samplingMaxTokens: String(answerTokens) }],
      ["filter", "isheep-filter", {}],
      ["rate", "isheep-rate", { samplingGrammar: ratingGrammar, samplingMaxTokens: "40" }],
      ["keep", "isheep-keep", { threshold: "6" }],
      ["train", "isheep-train", { trainThreads: String(threads), trainRank: "8" }],
    ];
    const times: Array<{ part: string; seconds: number; summary: string }> = [];
    for (const [part, stage, options] of members) {
      const start = performance.now();
      const summary = await runStageCommand(stage, { ...common, ...options });
      times.push({ part, seconds: (performance.now() - start) / 1000, summary });
    }
    const total = times.reduce((sum, time) => sum + time.seconds, 0);
    for (const { part, seconds, summary } of times) {
      console.log(
        `${part.padEnd(9)} ${seconds.toFixed(2).padStart(7)} s  ${((100 * seconds) / total).toFixed(1).padStart(5)}%  ${summary}`,
      );
    }
    const tokens = async (folder: string) => {
      const ledger = await readJsonl<{ completionTokens: number }>(join(run, folder, "usage.jsonl"));
      return ledger.records.reduce((sum, line) => sum + line.completionTokens, 0);
    };
    const generated = await tokens("isheep-prompts-round-1");
    const answered = await tokens("isheep-answers-round-1");
    const rated = await tokens("isheep-rate-round-1");
    console.log(
      `round: ${total.toFixed(2)} s; generated tokens: prompts ${generated}, answers ${answered}, ratings ${rated}`,
    );
    const train = times.find((time) => time.part === "train")!.seconds;
    const generation =
      total - train - times.filter((t) => t.part === "filter" || t.part === "keep").reduce((s, t) => s + t.seconds, 0);
    console.log(`ratio generation (generate + answer + rate) : train = ${(generation / train).toFixed(2)} : 1`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
