/**
 * Stage 1a, Self-Instruct (method-spec A.2): prompt the base model with sampled seed tasks, parse the list it
 * continues, filter, and keep instructions whose ROUGE-L with every seed and every kept instruction is <= 0.7.
 * Rounds commit in order, so a stopped and resumed run makes the same decisions and repeats no finished request.
 */
import {
  type CompletionRequest,
  type LanguageModel,
  type SamplingOptions,
  requestConcurrency,
} from "../../backends/language-model.js";
import type { SeedTask } from "../../constitution/constitution-schema.js";
import { AbortedError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { recordId } from "../../run-store/record-id.js";
import type { StageStore } from "../../run-store/stage-store.js";
import { DedupIndex } from "../../text/dedup-index.js";
import { rougeLTokens, rougeTokenize } from "../../text/rouge-l.js";
import { completeInOrder } from "../shared/complete-in-order.js";
import { checkContext, overflowRejection } from "../shared/context-check.js";
import { deriveSeed, sampleWithoutReplacement, seededRandom } from "../shared/random.js";
import { type StageUsage, usageSince } from "../shared/stage-usage.js";
import { type FilterRejection, filterSelfInstructTask, type SelfInstructFilterOptions } from "./filters.js";
import { parseSelfInstruct } from "./parse.js";
import { buildSelfInstructPrompt, type SelfInstructDemo } from "./prompt.js";

export const selfInstructStage = "self-instruct";

/** Stage 1a sampling defaults (the released script): T 1.0, top-p 0.98, 1024 new tokens, end-of-sequence banned. */
export const selfInstructSamplingDefaults = {
  temperature: 1,
  topP: 0.98,
  maxTokens: 1024,
  allowEos: false,
} as const satisfies SamplingOptions;

/** A kept self-instruct task (Alpaca fields plus provenance). */
export interface SelfInstructRecord {
  [field: string]: unknown;
  id: string;
  /** The id of the round (prompt) that produced it. */
  parentId: string;
  round: number;
  instruction: string;
  input: string;
  output: "";
  source: "self-instruct";
  /** Mean ROUGE-L with the seed instructions. */
  avgSimilarity: number;
  /** Highest ROUGE-L found against the pool when it was kept (<= threshold; see DedupCheck.maxScore). */
  maxSimilarity: number;
  backend: string;
}

export interface RunSelfInstructOptions {
  backend: LanguageModel;
  /** The `self-instruct` stage store (sharded or not). */
  store: StageStore;
  /** The seed tasks (the constitution's `seedTasks`). */
  constitution: { seedTasks: readonly SeedTask[]; hash?: string };
  /** Stop once this many instructions are kept (in this shard). */
  target: number;
  /** Merged over {@link selfInstructSamplingDefaults}. */
  sampling?: SamplingOptions;
  /** Demo tasks per prompt. Default 5. */
  demos?: number;
  /** How many of the demos come from already generated tasks once there are enough. Default 0 (seeds only). */
  generatedDemos?: number;
  /** Base seed; the shard adds 128 x its index. Default 42. */
  seed?: number;
  /** Prompts sent at once. Default the backend's `parallel` capability (at least 1). */
  batchSize?: number;
  /** Stop after this many consecutive rounds that kept nothing. Default 20. */
  maxRoundsWithoutProgress?: number;
  /** Hard cap on rounds. Default unlimited. */
  maxRounds?: number;
  /** Drop when ROUGE-L with any pooled instruction exceeds this. Default 0.7. */
  dedupThreshold?: number;
  filters?: SelfInstructFilterOptions;
  /** A further filter after the stage-1a ones (before the dedup), e.g. I-SHEEP's additions (method-spec C.1). */
  taskFilter?: (task: { instruction: string; input: string }) => FilterRejection | undefined;
  /**
   * Instructions made elsewhere that new ones must also differ from (ROUGE-L, after the seeds), e.g. the prompts of
   * earlier I-SHEEP rounds. Default none.
   */
  dedupPool?: ReadonlyArray<{ id: string; instruction: string }>;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunSelfInstructResult {
  counts: { kept: number; rejected: number; rounds: number };
  /** Tokens this call used (the manifest also counts earlier calls of a resumed run). */
  usage: StageUsage;
  stopReason: "target" | "no-progress" | "max-rounds";
  warnings: string[];
}

export async function runSelfInstruct(options: RunSelfInstructOptions): Promise<RunSelfInstructResult> {
  const { backend, store, onProgress, signal } = options;
  const stage = store.stage;
  const sampling = { ...selfInstructSamplingDefaults, ...options.sampling };
  const demoCount = options.demos ?? 5;
  const generatedDemos = Math.min(options.generatedDemos ?? 0, demoCount);
  const seed = (options.seed ?? 42) + 128 * (store.shard?.index ?? 0);
  const batchSize = requestConcurrency(backend, options.batchSize);
  const maxIdle = options.maxRoundsWithoutProgress ?? 20;
  const maxRounds = options.maxRounds ?? Number.POSITIVE_INFINITY;
  const seeds = options.constitution.seedTasks;
  const warnings = [...store.warnings];
  const callUsage = usageSince(store);
  const roundId = (round: number) => recordId(stage, "round", seed, demoCount, generatedDemos, round);

  // Rebuild the dedup pool from the seeds and the kept records, in the order they were kept.
  const index = new DedupIndex({ threshold: options.dedupThreshold ?? 0.7 });
  for (const task of seeds) index.add(task.instruction, `seed:${task.id}`);
  for (const earlier of options.dedupPool ?? []) index.add(earlier.instruction, earlier.id);
  const seedTokens = seeds.map((task) => rougeTokenize(task.instruction));
  const kept = await store.readRecords<SelfInstructRecord>();
  for (const record of kept) index.add(record.instruction, record.id);
  const keptPerRound = new Map<number, number>();
  for (const record of kept) keptPerRound.set(record.round, (keptPerRound.get(record.round) ?? 0) + 1);

  // Replay the finished rounds to find where to continue and how long nothing was kept. A round whose prompt did not
  // fit this context is passed over like a finished one that kept nothing; with a larger context it is tried again.
  const maxContext = backend.capabilities().maxContext;
  const settled = (r: number) =>
    store.isDone(roundId(r)) || store.isDone(recordId("context-overflow", roundId(r), maxContext));
  let round = 0;
  let idle = 0;
  const replay = (r: number) => {
    idle = (keptPerRound.get(r) ?? 0) > 0 ? 0 : idle + 1;
    round = r + 1;
  };
  while (settled(round)) replay(round);
  let keptCount = kept.length;
  onProgress?.({ type: "stage-start", stage, total: options.target, done: keptCount });

  const stopReason = (): RunSelfInstructResult["stopReason"] | undefined =>
    keptCount >= options.target
      ? "target"
      : idle >= maxIdle
        ? "no-progress"
        : round >= maxRounds
          ? "max-rounds"
          : undefined;

  /** `pool`: the kept records generated demos may come from (see the batch loop). */
  const demosFor = (r: number, pool: readonly SelfInstructRecord[]): SelfInstructDemo[] => {
    const random = seededRandom(stage, "demos", seed, r);
    const fromGenerated = pool.length >= generatedDemos ? generatedDemos : 0;
    const generated = sampleWithoutReplacement(random, pool, fromGenerated).map((record) => ({
      instruction: record.instruction,
      input: record.input,
    }));
    const fromSeeds = sampleWithoutReplacement(random, seeds, demoCount - generated.length).map((task) => ({
      instruction: task.instruction,
      ...(task.input === undefined ? {} : { input: task.input }),
    }));
    return [...fromSeeds, ...generated];
  };

  const commitRound = async (r: number, text: string, finishReason: "stop" | "length" | "abort", demos: number) => {
    const parentId = roundId(r);
    const parsed = parseSelfInstruct(text, finishReason, demos + 1);
    let keptNow = 0;
    for (const task of parsed.tasks) {
      const id = recordId(stage, parentId, task.position);
      if (store.isDone(id)) {
        // Written before an interruption: already in the pool (when kept) and counted.
        keptNow += kept.some((record) => record.id === id) ? 1 : 0;
        continue;
      }
      const base = { id, parentId, round: r };
      if (!task.ok) {
        await store.appendRejected({ ...base, text: task.raw, filter: "parse", reason: task.reason });
        continue;
      }
      const fields = { ...base, instruction: task.instruction, input: task.input, output: "" as const };
      const rejection = filterSelfInstructTask(task, options.filters) ?? options.taskFilter?.(task);
      if (rejection) {
        await store.appendRejected({ ...fields, ...rejection });
        continue;
      }
      const check = index.check(task.instruction);
      if (!check.keep) {
        await store.appendRejected({
          ...fields,
          filter: "rouge-dedup",
          reason: `ROUGE-L ${check.maxScore.toFixed(3)} > ${index.threshold} with ${check.nearest}`,
          maxSimilarity: check.maxScore,
          nearestId: check.nearest,
        });
        continue;
      }
      const tokens = rougeTokenize(task.instruction);
      const avgSimilarity =
        seedTokens.length === 0
          ? 0
          : seedTokens.reduce((sum, seedToken) => sum + rougeLTokens(tokens, seedToken), 0) / seedTokens.length;
      const record: SelfInstructRecord = {
        ...fields,
        source: "self-instruct",
        avgSimilarity,
        maxSimilarity: check.maxScore,
        backend: backend.id,
      };
      index.add(task.instruction, id);
      await store.appendRecord(record);
      kept.push(record);
      keptNow++;
      keptCount++;
    }
    await store.markDone(parentId);
    idle = keptNow > 0 ? 0 : idle + 1;
    onProgress?.({
      type: "record-end",
      stage,
      done: keptCount,
      total: options.target,
      kept: keptNow > 0,
      records: { kept: store.manifest.counts.kept, rejected: store.manifest.counts.rejected },
    });
  };

  try {
    while (stopReason() === undefined) {
      if (signal?.aborted) throw new AbortedError();
      // Batches are aligned to multiples of batchSize so demo pools do not depend on where a resume started.
      const batchStart = Math.floor(round / batchSize) * batchSize;
      const batchEnd = Math.min(batchStart + batchSize, maxRounds);
      // Generated demos come only from rounds committed before this batch began, which resume reproduces.
      const pool = generatedDemos > 0 ? kept.filter((record) => record.round < batchStart) : [];
      const requests: { round: number; demos: number; request: CompletionRequest }[] = [];
      for (let r = round; r < batchEnd; r++) {
        if (settled(r)) {
          // Finished in an earlier run (after a round that is being retried): replay it in order.
          if (requests.length > 0) break;
          replay(r);
          continue;
        }
        const demos = demosFor(r, pool);
        const prompt = buildSelfInstructPrompt(demos);
        const overflow = await checkContext(backend, prompt, sampling.maxTokens);
        if (overflow) {
          if (requests.length === 0) {
            // Nothing before it in flight: record it now (in order) as a round that kept nothing.
            await store.appendRejected({ round: r, prompt, ...overflowRejection(roundId(r), overflow) });
            idle++;
            round = r + 1;
            continue;
          }
          break; // committed at the start of the next batch, after the earlier rounds
        }
        requests.push({ round: r, demos: demos.length, request: { ...sampling, prompt, seed: deriveSeed(seed, r) } });
      }
      if (requests.length === 0) continue;
      await completeInOrder(
        backend,
        requests.map((entry) => entry.request),
        async (i, result) => {
          const entry = requests[i]!;
          const completion = result.completions[0];
          store.addUsage(result.usage, roundId(entry.round));
          await commitRound(entry.round, completion?.text ?? "", completion?.finishReason ?? "length", entry.demos);
          round = entry.round + 1;
        },
        signal,
      );
    }
  } finally {
    await store.saveManifest();
  }
  const reason = stopReason() ?? "target";
  onProgress?.({
    type: "stage-end",
    stage,
    done: keptCount,
    kept: store.manifest.counts.kept,
    rejected: store.manifest.counts.rejected,
  });
  if (reason === "no-progress") warnings.push(`${store.label}: stopped after ${maxIdle} rounds in a row kept nothing`);
  return {
    counts: { kept: store.manifest.counts.kept, rejected: store.manifest.counts.rejected, rounds: round },
    usage: callUsage(),
    stopReason: reason,
    warnings,
  };
}
