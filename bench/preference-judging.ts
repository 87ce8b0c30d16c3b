/**
 * SALMON's hot loop: salmon-preferences judging pairs x reward principles x 2 orders (method-spec B.2) on the ~19M
 * benchmark model, through the stage's own code (`runSalmonPreferences` into a temp run store).
 * 1. Prompt tokens evaluated against the minimum: the number of distinct token prefixes over all judge prompts (a
 *    trie's nodes: every shared prefix evaluated once), measured with the scoring context's token meter
 *    (`scoreDecodeStats`). Target <= 1.2x.
 * 2. Items (score calls) per second with 4 scoring sequences against 1. Target >= 2x. The machine may be shared, so
 *    the two variants alternate over `--rounds` rounds (1 then 4, then 4 then 1, ...), each round on new pairs judged
 *    by both, each on a new engine (nothing cached), and the load average is printed with each measurement. Both variants' scores of the same pairs are compared (float rounding only).
 * 3. The engine alone (see `engineAlone`): the same comparison without the scorer, on fixed token batches.
 * Run: `npx tsx bench/preference-judging.ts [--pairs 4] [--principles 8] [--words 60] [--rounds 2]` (`--rounds 0`:
 * part 3 only).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type LlamaContextSequence, type Token } from "node-llama-cpp";
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
const rounds = numberFlag("rounds", 2);
const constitution = await loadConstitution(defaultConstitutionDir());
const principles = constitution.salmon!.rewardPrinciples.slice(0, principleCount);
const vocabulary =
  "the a river lamp stone quiet bright answer because first then finally often never small large warm cold".split(" ");

type CopyableSequence = LlamaContextSequence & {
  _copyStateFromOtherSequence?: (other: LlamaContextSequence, upToTokenIndex: number) => Promise<boolean>;
};

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

interface Measured {
  seconds: number;
  evaluated: number;
  decodeCalls: number;
  load: [number, number];
  judgments: Map<string, Array<{ s12: number; s21: number }>>;
}

async function judge(backend: LlamaCppBackend, pairs: ResponsePair[], dir: string): Promise<Measured> {
  const run = await openRun(dir, { create: true });
  try {
    const before = await backend.scoreDecodeStats();
    const loadBefore = loadavg()[0]!;
    const start = performance.now();
    const store = await run.stage("salmon-preferences");
    await runSalmonPreferences({ judge: backend, store, pairs, principles, constitution });
    const seconds = (performance.now() - start) / 1000;
    const after = await backend.scoreDecodeStats();
    const judgments = new Map<string, Array<{ s12: number; s21: number }>>();
    for (const record of await store.readRecords())
      judgments.set(record.id, record.judgments as Array<{ s12: number; s21: number }>);
    return {
      seconds,
      evaluated: after.decodedTokens - before.decodedTokens,
      decodeCalls: after.decodeCalls - before.decodeCalls,
      load: [loadBefore, loadavg()[0]!],
      judgments,
    };
  } finally {
    await run.close();
  }
}

await withBenchModel("F16", async ({ path, parameterCount }) => {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-bench-judging-"));
  const variants: number[] = [1, 4];
  try {
    const items = pairCount * principles.length * 2;
    console.log(
      `${(parameterCount / 1e6).toFixed(0)}M-parameter model; ${pairCount} pairs x ${principles.length} principles x 2 orders = ${items} score calls (2 letters each) per round, answers of ${words} words, ${rounds} round(s)`,
    );
    const totals = new Map(variants.map((sequences) => [sequences, { seconds: 0, evaluated: 0, minimum: 0 }]));
    const speedups: number[] = [];
    let largestDifference = 0;
    for (let round = 0; round < rounds; round++) {
      const pairs = pairsFor(`Round ${round + 1}`);
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      const measured = new Map<number, Measured>();
      for (const sequences of order) {
        // A new engine each time, so nothing is cached from before (the judge prompts of all pairs share a head).
        const backend = await createLlamaCppBackend({
          model: path,
          contextSize: 4096,
          sequences: 1,
          scoreSequences: sequences,
        });
        let minimum: number;
        let result: Measured;
        try {
          minimum = await minimumTokens(backend, pairs);
          result = await judge(backend, pairs, join(dir, `round-${round}-${sequences}`));
        } finally {
          await backend.close();
        }
        measured.set(sequences, result);
        const total = totals.get(sequences)!;
        total.seconds += result.seconds;
        total.evaluated += result.evaluated;
        total.minimum += minimum;
        console.log(
          `  round ${round + 1}, ${sequences} scoring sequence(s): ${result.seconds.toFixed(1)} s, ${(items / result.seconds).toFixed(2)} items/s, ${(result.evaluated / result.seconds).toFixed(0)} prompt tokens/s in ${result.decodeCalls} decode calls; tokens evaluated ${result.evaluated} vs minimum ${minimum} -> ${(result.evaluated / minimum).toFixed(3)}x; load average ${result.load[0].toFixed(1)} -> ${result.load[1].toFixed(1)}`,
        );
      }
      const one = measured.get(1)!;
      const four = measured.get(4)!;
      speedups.push(one.seconds / four.seconds);
      for (const [id, judgments] of one.judgments)
        judgments.forEach((j, i) => {
          const other = four.judgments.get(id)?.[i];
          if (!other) throw new Error(`pair ${id}: judged with 1 scoring sequence but not with 4`);
          largestDifference = Math.max(largestDifference, Math.abs(j.s12 - other.s12), Math.abs(j.s21 - other.s21));
        });
    }
    for (const [sequences, total] of rounds > 0 ? totals : [])
      console.log(
        `  ${sequences} scoring sequence(s), all rounds: prompt tokens evaluated ${(total.evaluated / total.minimum).toFixed(3)}x the minimum (target <= 1.2); ${((rounds * items) / total.seconds).toFixed(2)} items/s`,
      );
    if (speedups.length) {
      const sorted = [...speedups].sort((a, b) => a - b);
      const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
      console.log(
        `  items/s with 4 scoring sequences vs 1: ${speedups.map((x) => x.toFixed(2)).join(", ")} by round, median ${median.toFixed(2)}x (target >= 2); largest |s12|, |s21| difference between the two: ${largestDifference.toExponential(1)}`,
      );
    }
    await engineAlone(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/**
 * 3. The engine alone, without the scorer: 4 x 300 new tokens after a shared 750-token prefix, as one batch on 4
 *    sequences (the prefix copied) or one after another on 1, in alternating order over 3 rounds. Near 1x means
 *    prompt evaluation is compute-bound here, so parallel sequences cannot beat one sequence that evaluates the same
 *    tokens.
 */
async function engineAlone(path: string): Promise<void> {
  const llama = await getLlama({ gpu: false, build: "never" });
  const model = await llama.loadModel({ modelPath: path });
  try {
    const options = {
      contextSize: 4096,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      threads: availableParallelism(),
    } as const;
    const one = (await model.createContext({ ...options, sequences: 1 })).getSequence();
    const fourContext = await model.createContext({ ...options, sequences: 4 });
    const four = Array.from({ length: 4 }, () => fourContext.getSequence()) as CopyableSequence[];
    const tokens = (length: number, seed: number) =>
      Array.from({ length }, (_, i) => ((((i + 1) * 2654435761 + seed * 97) % 300) + 3) as Token);
    const prefix = tokens(750, 1);
    const ratios: number[] = [];
    for (let round = 0; round < 3; round++) {
      const tails = Array.from({ length: 4 }, (_, k) => tokens(300, 10 + k + round * 4));
      const seconds: Record<string, number> = {};
      for (const variant of round % 2 === 0 ? ["one", "four"] : ["four", "one"]) {
        if (variant === "one") {
          await one.clearHistory();
          await one.evaluateWithoutGeneratingNewTokens(prefix);
          const start = performance.now();
          for (const tail of tails) {
            await one.eraseContextTokenRanges([{ start: prefix.length, end: one.nextTokenIndex }]);
            await one.evaluateWithoutGeneratingNewTokens(tail);
          }
          seconds[variant] = (performance.now() - start) / 1000;
        } else {
          for (const sequence of four) await sequence.clearHistory();
          await four[0]!.evaluateWithoutGeneratingNewTokens(prefix);
          const start = performance.now();
          for (const sequence of four.slice(1)) await sequence._copyStateFromOtherSequence?.(four[0]!, prefix.length);
          await Promise.all(four.map((sequence, k) => sequence.evaluateWithoutGeneratingNewTokens(tails[k]!)));
          seconds[variant] = (performance.now() - start) / 1000;
        }
      }
      ratios.push(seconds.one! / seconds.four!);
      console.log(
        `  engine alone, round ${round + 1}: 4 x 300 tokens on 1 sequence ${seconds.one!.toFixed(1)} s, on 4 at once ${seconds.four!.toFixed(1)} s -> ${ratios.at(-1)!.toFixed(2)}x; load average ${loadavg()[0]!.toFixed(1)}`,
      );
    }
  } finally {
    await model.dispose();
  }
}
