/**
 * SALMON's hot loop: salmon-preferences judging pairs x reward principles x 2 orders (method-spec B.2) on the ~19M
 * benchmark model, through the stage's own code (`runSalmonPreferences` into a temp run store).
 * 1. Prompt tokens evaluated against the minimum: the number of distinct token prefixes over all judge prompts (a
 *    trie's nodes: every shared prefix evaluated once), measured with the scoring context's token meter
 *    (`scoreDecodeStats`). Target <= 1.2x.
 * 2. Items (score calls) per second with 4 scoring sequences against 1, on the same pairs (other openings, so nothing
 *    is cached from the run before). Target >= 2x.
 * Run: `npx tsx bench/preference-judging.ts [--pairs 4] [--principles 8] [--words 60]`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLlamaCppBackend, type LlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { openRun } from "../src/run-store/index.js";
import { judgePromptHead, judgePromptTail } from "../src/stages/salmon/judge-prompt.js";
import { type ResponsePair, runSalmonPreferences } from "../src/stages/salmon/preferences.js";
import { rewardPrincipleText } from "../src/stages/salmon/reviewer-prompt.js";
import { numberFlag, withBenchModel } from "./lib/bench-model.js";

const pairCount = numberFlag("pairs", 4);
const principleCount = numberFlag("principles", 8);
const words = numberFlag("words", 60);
const constitution = await loadConstitution(defaultConstitutionDir());
const principles = constitution.salmon!.rewardPrinciples.slice(0, principleCount);
const vocabulary =
  "the a river lamp stone quiet bright answer because first then finally often never small large warm cold".split(" ");

/** Pairs whose instructions start with `opening`, so a second run shares no prefix with the first. */
function pairsFor(opening: string): ResponsePair[] {
  const text = (seed: number) =>
    Array.from({ length: words }, (_, i) => vocabulary[(seed * 7 + i * ((seed % 5) + 3)) % vocabulary.length]).join(
      " ",
    );
  return Array.from({ length: pairCount }, (_, k) => ({
    id: `${opening}-${k}`,
    parentId: `${opening}-prompt-${k}`,
    instruction: `${opening}: question ${k}, tell me about ${vocabulary[k % vocabulary.length]}.`,
    input: "",
    output1: text(2 * k + 1),
    output2: text(2 * k + 2),
    responseIds: [`${opening}-${k}-0`, `${opening}-${k}-1`],
    ended: [true, true],
  }));
}

/** Distinct token prefixes of every judge prompt of `pairs` (the least a scorer must evaluate). */
async function minimumTokens(backend: LlamaCppBackend, pairs: readonly ResponsePair[]): Promise<number> {
  const root = new Map<number, unknown>();
  let nodes = 0;
  for (const pair of pairs) {
    for (const [first, second] of [
      [pair.output1, pair.output2],
      [pair.output2, pair.output1],
    ] as const) {
      const head = judgePromptHead(constitution.assistant, pair, first, second);
      for (const principle of principles) {
        const tail = judgePromptTail(
          constitution.assistant,
          principle.dimension,
          rewardPrincipleText(constitution, principle, false),
        );
        let node = root;
        for (const token of await backend.tokenize(head + tail, { addBos: true })) {
          let child = node.get(token) as Map<number, unknown> | undefined;
          if (!child) {
            child = new Map();
            node.set(token, child);
            nodes++;
          }
          node = child;
        }
      }
    }
  }
  return nodes;
}

async function judge(backend: LlamaCppBackend, pairs: ResponsePair[], dir: string) {
  const run = await openRun(dir, { create: true });
  try {
    const before = (await backend.scoreDecodeStats()).decodedTokens;
    const start = performance.now();
    await runSalmonPreferences({
      judge: backend,
      store: await run.stage("salmon-preferences"),
      pairs,
      principles,
      constitution,
    });
    const seconds = (performance.now() - start) / 1000;
    return { seconds, evaluated: (await backend.scoreDecodeStats()).decodedTokens - before };
  } finally {
    await run.close();
  }
}

await withBenchModel("F16", async ({ path, parameterCount }) => {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-bench-judging-"));
  try {
    const items = pairCount * principles.length * 2;
    console.log(
      `${(parameterCount / 1e6).toFixed(0)}M-parameter model; ${pairCount} pairs x ${principles.length} principles x 2 orders = ${items} score calls (2 letters each), answers of ${words} words`,
    );
    const results: Record<number, { seconds: number; evaluated: number; minimum: number }> = {};
    for (const sequences of [1, 4]) {
      const backend = await createLlamaCppBackend({
        model: path,
        contextSize: 4096,
        sequences: 1,
        scoreSequences: sequences,
      });
      try {
        const pairs = pairsFor(`Run with ${sequences} scoring sequence${sequences === 1 ? "" : "s"}`);
        const minimum = await minimumTokens(backend, pairs);
        const { seconds, evaluated } = await judge(backend, pairs, join(dir, `run-${sequences}`));
        results[sequences] = { seconds, evaluated, minimum };
        console.log(
          `  ${sequences} scoring sequence(s): ${seconds.toFixed(1)} s, ${(items / seconds).toFixed(2)} items/s; prompt tokens evaluated ${evaluated} vs minimum ${minimum} -> ${(evaluated / minimum).toFixed(3)}x (target <= 1.2)`,
        );
      } finally {
        await backend.close();
      }
    }
    const one = results[1]!;
    const four = results[4]!;
    console.log(`  items/s with 4 scoring sequences vs 1: ${(one.seconds / four.seconds).toFixed(2)}x (target >= 2)`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
