/**
 * The salmon-aggregate stage's work (method-spec B.3): the judged pairs through `aggregatePairs`, one record per
 * labelled (pass, pair) and one rejection per skipped one, then the preference exports of the current set. The
 * variances depend on every pair, so a larger set of pairs is a new set: its records get new ids, and the exports and
 * the reward model read the current set only.
 */
import type { Constitution } from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import type { ProgressListener } from "../../progress/progress-event.js";
import { type ItemResult, recordId, type StageStore, type StoreRecord } from "../../run-store/index.js";
import { chatPrompt } from "../engrave/prompt.js";
import { type AggregateOutcome, type AggregateSettings, aggregatePairs, aggregateSetId } from "./aggregate.js";
import type { LanguageOf } from "./language-id.js";
import type { SalmonPreferenceRecord } from "./preferences.js";
import { type AggregatedExample, writePreferenceExports } from "./preference-exports.js";

export const salmonAggregateStage = "salmon-aggregate";

export interface SalmonAggregateRecord extends AggregatedExample {
  [field: string]: unknown;
  parentId: string;
  set: string;
  pass: number;
  output1: string;
  output2: string;
  preference: 1 | 2;
  scores: number[];
  dominant: number;
  ruleFlag: boolean;
  rule?: "ai-phrase" | "language";
  noiseFlip: boolean;
  swapped: boolean;
  languages?: AggregateOutcome["languages"];
  questionType?: string;
}

export interface RunSalmonAggregateOptions {
  store: StageStore;
  pairs: readonly SalmonPreferenceRecord[];
  /** Reward principle ids used (each pair must have a judgment for every one). */
  principles: readonly string[];
  settings: AggregateSettings;
  constitution: Constitution;
  seed: number;
  /** Turns the language rule on. */
  languageOf?: LanguageOf;
  command?: string;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface RunSalmonAggregateResult {
  set: string;
  examples: number;
  skipped: number;
  /** Pairs left out because they lack a judgment of a principle used. */
  incomplete: number;
  variances: Record<string, number>;
  files: { preferences: string; rewardPairs: string };
  warnings: string[];
}

/**
 * The records of the current set among aggregate records: `set` as the stage's manifest names it, else (a merged
 * folder, which keeps no set) the set of the last record written.
 */
export function currentSet<T extends { set: string }>(records: readonly T[], set?: unknown): T[] {
  const current = typeof set === "string" ? set : records.at(-1)?.set;
  return records.filter((record) => record.set === current);
}

export async function runSalmonAggregate(options: RunSalmonAggregateOptions): Promise<RunSalmonAggregateResult> {
  const { store, principles, constitution } = options;
  const complete = options.pairs.filter((pair) =>
    principles.every((principle) => pair.judgments.some((judgment) => judgment.principle === principle)),
  );
  const incomplete = options.pairs.length - complete.length;
  const byId = new Map(complete.map((pair) => [pair.id, pair]));
  const { variances, outcomes } = aggregatePairs(
    complete,
    principles,
    options.settings,
    options.seed,
    options.languageOf,
  );
  const set = aggregateSetId(complete, variances);
  const warnings: string[] = [];
  for (const [principle, variance] of variances)
    if (!(variance > 0) && complete.length > 0)
      warnings.push(`principle "${principle}" has no variance over the pairs' scores: it never decides a label`);
  if (incomplete > 0)
    warnings.push(`${incomplete} judged pair(s) lack a judgment of a principle used and were left out`);
  const items = outcomes.map((outcome) => ({
    ...outcome,
    id: recordId(salmonAggregateStage, set, outcome.pass, outcome.pairId),
  }));
  await store.processItems<(typeof items)[number], StoreRecord>({
    items,
    concurrency: 1,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    process: async (outcome): Promise<ItemResult> => {
      const pair = byId.get(outcome.pairId)!;
      if (outcome.skip) {
        return {
          rejected: {
            id: outcome.id,
            parentId: pair.id,
            pass: outcome.pass,
            instruction: pair.instruction,
            principles: outcome.principles,
            ...outcome.skip,
          },
        };
      }
      const first = outcome.preference === 1;
      // Which sample each shown output is: the swap reverses them.
      const [endedFirst, endedSecond] = outcome.swapped ? [pair.ended[1], pair.ended[0]] : pair.ended;
      const record: SalmonAggregateRecord = {
        id: outcome.id,
        parentId: pair.id,
        set,
        pass: outcome.pass,
        instruction: pair.instruction,
        input: pair.input,
        prompt: chatPrompt(constitution.assistant, "concise", pair.instruction, pair.input),
        output1: outcome.output1,
        output2: outcome.output2,
        preference: outcome.preference,
        chosen: first ? outcome.output1 : outcome.output2,
        rejected: first ? outcome.output2 : outcome.output1,
        chosenEnded: first ? endedFirst : endedSecond,
        rejectedEnded: first ? endedSecond : endedFirst,
        principles: outcome.principles,
        negated: outcome.negated,
        scores: outcome.scores,
        dominant: outcome.dominant,
        ruleFlag: outcome.ruleFlag,
        ...(outcome.rule ? { rule: outcome.rule } : {}),
        noiseFlip: outcome.noiseFlip,
        swapped: outcome.swapped,
        ...(outcome.languages ? { languages: outcome.languages } : {}),
        ...(pair.questionType ? { questionType: pair.questionType } : {}),
      };
      return { kept: record };
    },
  });
  const current = new Set(items.map((item) => item.id));
  const examples = (await store.readRecords<SalmonAggregateRecord>()).filter((record) => current.has(record.id));
  // Stored in pass and pair order whatever was written before, so the exports are the same after a resume.
  const order = new Map(items.map((item, index) => [item.id, index]));
  examples.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  if (examples.length === 0 && options.pairs.length > 0) {
    throw new ConfigError(
      `salmon-aggregate: no pair gave a preference (${outcomes.length} draws skipped; see 'selfalign status'): the judge's two orders never agreed, or the language rule dropped every pair`,
      { path: store.dir },
    );
  }
  const files = await writePreferenceExports(store.dir, examples, constitution, {
    stage: store.stage,
    ...(options.command ? { command: options.command } : {}),
  });
  store.manifest.extra.set = set;
  store.manifest.extra.variances = Object.fromEntries(variances);
  await store.saveManifest();
  return {
    set,
    examples: examples.length,
    skipped: outcomes.filter((outcome) => outcome.skip).length,
    incomplete,
    variances: Object.fromEntries(variances),
    files,
    warnings,
  };
}
