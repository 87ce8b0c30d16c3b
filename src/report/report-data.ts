/** Everything the report shows, gathered from a run directory: counts come from the run store, never re-guessed. */
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { ConfigError } from "../errors/index.js";
import { evalDirName, flattenAggregate, readEvalResult } from "../eval/eval-result.js";
import { readRunStatus, readStageAcrossShards, type StoreRecord } from "../run-store/index.js";
import { isGroup, type ReportPanel, type ReportRecordView } from "../pipeline/stage-definition.js";
import { defaultRegistry, type StageRegistry, stageOfFolder } from "../pipeline/stage-registry.js";
import { countVerbNouns, type VerbNounCounts } from "./instruction-diversity.js";
import { type PreferenceStats, preferenceStats } from "./preference-stats.js";

/** One record as the browser shows it (kept or rejected): its stage's view of it, and where it stands. */
export interface ReportRecord extends ReportRecordView {
  id: string;
  stage: string;
  kept: boolean;
  filter?: string;
  reason?: string;
  /** The round of a repeated group (I-SHEEP) the record belongs to. */
  round?: number;
}

export interface Histogram {
  /** Lower bound (inclusive) of each bin, in words. */
  edges: number[];
  counts: number[];
}

/** One round of a repeated group (I-SHEEP): its members' counts, the figures they report, and a few of its prompts. */
export interface RoundSummary {
  group: string;
  round: number;
  /** The round's member folders, in the group's order. */
  stages: Array<{ stage: string; folder: string; kept: number; rejected: number; byFilter: Record<string, number> }>;
  /** Figures the members' definitions read from their manifests (a kept rate, an eval score, a final loss). */
  figures: Record<string, number>;
  /** The round's first kept prompts. */
  prompts: string[];
  /** Kept prompts in all. */
  promptCount: number;
}

/** Scores of one aspect in one round: how many of each score 1..10, and how many ratings could not be read. */
export interface RatingHistogram {
  round?: number;
  aspect: string;
  /** counts[i] = ratings with score i + 1. */
  counts: number[];
  unreadable: number;
}

/** How two aspects' ratings of the same records agree, per round. */
export interface RatingAgreement {
  round?: number;
  aspects: [string, string];
  /** Records rated on both. */
  pairs: number;
  /** Share with equal scores, and with scores at most 1 apart. */
  exact: number;
  withinOne: number;
  /** Pearson correlation; absent when either score is constant. */
  correlation?: number;
  /** matrix[a - 1][b - 1]: records scored a on the first aspect and b on the second. */
  matrix: number[][];
}

/** One point of a training curve; `accuracy` and `margin` (chosen minus rejected reward) for pair objectives. */
export interface CurvePoint {
  step: number;
  loss: number;
  accuracy?: number;
  margin?: number;
}

export interface ReportData {
  run: { name: string; createdAt?: string; constitutionHash?: string; backends?: unknown };
  generatedAt: string;
  stages: Array<{
    stage: string;
    kept: number;
    rejected: number;
    byFilter: Record<string, number>;
    usage: { promptTokens: number; completionTokens: number };
  }>;
  /** How often each principle is cited in internal thoughts, overall and per red-team question type. */
  principleUsage: { overall: Record<string, number>; byType: Record<string, Record<string, number>> };
  /** Red-team coverage: for each question type, its topics and how many questions each topic produced. */
  redTeam: Array<{ questionType: string; topics: Array<{ topic: string; questions: number }> }>;
  diversity: VerbNounCounts;
  lengths: { prompts: Histogram; thoughts: Histogram; answers: Histogram };
  /** Training logs (loss.jsonl): loss per step, and for pair objectives (DPO, reward model) accuracy and margin. */
  lossCurves: Array<{ name: string; points: CurvePoint[] }>;
  /** Held-out metrics of trainings that evaluated (eval.jsonl): loss, and accuracy and margin for pair objectives. */
  evalCurves: Array<{ name: string; points: CurvePoint[] }>;
  /** PPO runs (ppo.jsonl): mean reward, KL to the reference and response length per step. */
  rlCurves: Array<{ name: string; points: RlCurvePoint[] }>;
  /** SALMON: agreement of the judge's two orders and score spread per principle; labels after aggregation. */
  salmon: PreferenceStats;
  evaluations: Array<{ name: string; task: string; metrics: Record<string, number> }>;
  /** Rounds of repeated groups, in order (empty for a run without one). */
  rounds: RoundSummary[];
  ratings: RatingHistogram[];
  agreement: RatingAgreement[];
  records: ReportRecord[];
}

const text = (value: unknown): string => (typeof value === "string" ? value : "");

/** The view of a record of a folder no definition describes (a stage of another version, a user's folder). */
function genericView(record: StoreRecord): ReportRecordView {
  const cited = record.citedPrinciples;
  return {
    instruction: text(record.instruction) || text(record.prompt),
    input: text(record.input),
    thoughts: text(record.thoughts),
    output: text(record.output) || text(record.completion),
    principles: Array.isArray(cited) ? cited.filter((p): p is string => typeof p === "string") : [],
    ...(typeof record.questionType === "string" ? { questionType: record.questionType } : {}),
    ...(typeof record.topic === "string" ? { topic: record.topic } : {}),
  };
}

function toReportRecord(
  stage: string,
  record: StoreRecord,
  kept: boolean,
  view: (record: StoreRecord, kept: boolean) => ReportRecordView,
  round: number | undefined,
): ReportRecord {
  return {
    id: record.id,
    stage,
    kept,
    ...(kept ? {} : { filter: text(record.filter), reason: text(record.reason) }),
    ...view(record, kept),
    ...(round === undefined ? {} : { round }),
  };
}

const wordCount = (value: string) => (value.match(/\S+/g) ?? []).length;

/** Histogram of word counts with bins that double in width past 16 words (1, 2, 4, ... 1024+). */
export function wordHistogram(values: string[]): Histogram {
  const edges = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
  const counts = edges.map(() => 0);
  for (const value of values) {
    if (!value) continue;
    const words = wordCount(value);
    let bin = edges.length - 1;
    while (bin > 0 && words < edges[bin]!) bin--;
    counts[bin]!++;
  }
  return { edges, counts };
}

/** Files under `dir` (not in node_modules, nor in `previous/`, where the pipeline keeps records of other settings). */
async function findFiles(dir: string, name: (file: string) => boolean, depth = 4): Promise<string[]> {
  if (depth < 0) return [];
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== "node_modules" && entry.name !== "previous")
      found.push(...(await findFiles(path, name, depth - 1)));
    else if (entry.isFile() && name(entry.name)) found.push(path);
  }
  return found.sort();
}

export interface RlCurvePoint {
  step: number;
  reward: number;
  kl: number;
  responseLength: number;
}

/** The points of a PPO curve (ppo.jsonl); a torn last line of a run in progress is skipped. */
async function readRlCurve(path: string): Promise<RlCurvePoint[]> {
  const points: RlCurvePoint[] = [];
  for (const line of (await readFile(path, "utf8")).split("\n")) {
    if (!line.trim()) continue;
    try {
      const row = JSON.parse(line) as Partial<Record<keyof RlCurvePoint, unknown>>;
      const { step, reward, kl, responseLength } = row;
      if ([step, reward, kl, responseLength].every((v) => typeof v === "number"))
        points.push({ step, reward, kl, responseLength } as RlCurvePoint);
    } catch {
      // a torn last line
    }
  }
  return points;
}

async function readLossCurve(path: string): Promise<CurvePoint[]> {
  const points: CurvePoint[] = [];
  for (const line of (await readFile(path, "utf8")).split("\n")) {
    if (!line.trim()) continue;
    try {
      const row = JSON.parse(line) as { step?: unknown; loss?: unknown; accuracy?: unknown; margin?: unknown };
      if (typeof row.step === "number" && typeof row.loss === "number")
        points.push({
          step: row.step,
          loss: row.loss,
          ...(typeof row.accuracy === "number" ? { accuracy: row.accuracy } : {}),
          ...(typeof row.margin === "number" ? { margin: row.margin } : {}),
        });
    } catch {
      // a torn last line of a training log in progress
    }
  }
  return points;
}

/** An eval result of the run, as its task and finite aggregate metrics; files that are not eval results are skipped. */
async function readEvaluation(runDir: string, path: string): Promise<ReportData["evaluations"][number] | undefined> {
  const result = await readEvalResult(path).catch(() => undefined);
  if (!result) return undefined;
  const metrics = Object.fromEntries(
    [...flattenAggregate(result.aggregate)].filter(([, value]) => Number.isFinite(value)),
  );
  if (Object.keys(metrics).length === 0) return undefined;
  return { name: relative(runDir, path), task: result.task, metrics };
}

/** Gather a run's counts, records, training curves and evaluation scores for the report. */
export async function collectReportData(
  runDir: string,
  registry: StageRegistry = defaultRegistry,
): Promise<ReportData> {
  if (!(await stat(runDir).catch(() => undefined))?.isDirectory()) {
    throw new ConfigError(`run directory not found. Pass the folder a 'selfalign run' or 'selfalign stage' wrote`, {
      path: runDir,
    });
  }
  const status = await readRunStatus(runDir);
  const records: ReportRecord[] = [];
  const rounds = new Map<string, RoundSummary & { order: number[] }>();
  const parentOf = new Map<string, string>();
  const stages: ReportData["stages"] = [];
  const panelsOf = new Map<string, ReportPanel[]>();
  const judged: StoreRecord[] = [];
  const aggregated: StoreRecord[] = [];
  const feeds = (record: ReportRecord, panel: ReportPanel) => panelsOf.get(record.stage)?.includes(panel) ?? false;
  for (const stageStatus of status.stages) {
    const { stage, manifest } = stageStatus;
    stages.push({
      stage,
      kept: manifest.counts.kept,
      rejected: manifest.counts.rejected,
      byFilter: manifest.counts.byFilter,
      usage: { promptTokens: manifest.usage.promptTokens, completionTokens: manifest.usage.completionTokens },
    });
    const found = stageOfFolder(registry, stage);
    const folderReport = found?.definition.report?.[found.folder.name];
    if (found?.round !== undefined) {
      const group = registry.find((entry) => isGroup(entry) && entry.stages.includes(found.definition));
      const groupName = group?.name ?? found.definition.name;
      const key = `${groupName}/${found.round}`;
      const summary = rounds.get(key) ?? {
        group: groupName,
        round: found.round,
        stages: [],
        figures: {},
        prompts: [],
        promptCount: 0,
        order: [],
      };
      // Members in the group's order, a member's folders in its definition's order.
      const memberAt = group && isGroup(group) ? group.stages.indexOf(found.definition) : 0;
      summary.order.push(memberAt * 100 + found.definition.folders.indexOf(found.folder));
      summary.stages.push({
        stage: found.definition.name,
        folder: stage,
        kept: manifest.counts.kept,
        rejected: manifest.counts.rejected,
        byFilter: manifest.counts.byFilter,
      });
      // Figures live in the unsharded (or merged) folder's manifest; a sum over shards keeps no extras.
      const own = stageStatus.parts.find((part) => part.shard === undefined)?.manifest;
      if (own) Object.assign(summary.figures, folderReport?.figures?.(own) ?? {});
      rounds.set(key, summary);
    }
    const view = folderReport?.view ?? genericView;
    for (const panel of folderReport?.panels ?? []) panelsOf.set(stage, [...(panelsOf.get(stage) ?? []), panel]);
    const read = await readStageAcrossShards(runDir, stage);
    const panels = folderReport?.panels ?? [];
    if (panels.includes("preferences")) judged.push(...read.records);
    if (panels.includes("preference-labels")) {
      // An aggregation folder may also hold examples of an earlier set of pairs; the figures are of the current one.
      const set = manifest.extra.set;
      aggregated.push(...read.records.filter((record) => typeof set !== "string" || record.set === set));
    }
    for (const record of read.records) records.push(toReportRecord(stage, record, true, view, found?.round));
    for (const record of read.rejected) records.push(toReportRecord(stage, record, false, view, found?.round));
    for (const r of [...read.records, ...read.rejected])
      if (typeof r.parentId === "string") parentOf.set(r.id, r.parentId);
  }

  // Records of later stages inherit the red-team type and topic of the prompt they answer.
  const byId = new Map<string, ReportRecord>(records.map((r) => [r.id, r]));
  for (const record of records) {
    let parent = parentOf.get(record.id);
    for (let hops = 0; parent && hops < 8 && record.questionType === undefined; hops++) {
      const source = byId.get(parent);
      if (source?.questionType !== undefined) {
        record.questionType = source.questionType;
        if (source.topic !== undefined) record.topic = source.topic;
      }
      parent = parentOf.get(parent);
    }
  }

  const overall: Record<string, number> = {};
  const byType: Record<string, Record<string, number>> = {};
  for (const record of records) {
    if (!record.kept) continue;
    for (const principle of record.principles) {
      overall[principle] = (overall[principle] ?? 0) + 1;
      if (record.questionType !== undefined) {
        const row = byType[record.questionType] ?? {};
        row[principle] = (row[principle] ?? 0) + 1;
        byType[record.questionType] = row;
      }
    }
  }

  const topics = new Map<string, Map<string, number>>();
  for (const record of records) {
    // Coverage comes from the red-team stages themselves (topics and questions), not from later stages' answers.
    // Only kept records: a rejected topic is not a topic of the run, a rejected question covers nothing.
    if (
      !record.kept ||
      !feeds(record, "red-team-coverage") ||
      record.questionType === undefined ||
      record.topic === undefined
    )
      continue;
    const row = topics.get(record.questionType) ?? new Map<string, number>();
    const isQuestion = record.instruction !== "" && record.instruction !== record.topic;
    row.set(record.topic, (row.get(record.topic) ?? 0) + (isQuestion ? 1 : 0));
    topics.set(record.questionType, row);
  }
  const redTeam = [...topics.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([questionType, row]) => ({
      questionType,
      topics: [...row.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([topic, questions]) => ({ topic, questions })),
    }));

  const keptPrompts = records.filter((r) => r.kept && feeds(r, "prompts") && r.instruction);
  const roundList = [...rounds.values()]
    .sort((a, b) => a.group.localeCompare(b.group) || a.round - b.round)
    .map(({ order, ...summary }) => {
      const stages = summary.stages
        .map((entry, i) => ({ entry, at: order[i]! }))
        .sort((a, b) => a.at - b.at)
        .map(({ entry }) => entry);
      const mine = keptPrompts.filter(
        (r) => r.round === summary.round && summary.stages.some((s) => s.folder === r.stage),
      );
      return { ...summary, stages, prompts: mine.slice(0, 5).map((r) => r.instruction), promptCount: mine.length };
    });
  const rated = records.filter((r) => feeds(r, "ratings") && r.rating !== undefined);
  const answered = records.filter((r) => r.kept && feeds(r, "answers") && (r.output || r.thoughts));

  const lossCurves = [];
  for (const path of await findFiles(runDir, (f) => f === "loss.jsonl")) {
    const points = await readLossCurve(path);
    if (points.length) lossCurves.push({ name: relative(runDir, path), points });
  }
  const evalCurves = [];
  for (const path of await findFiles(runDir, (f) => f === "eval.jsonl")) {
    const points = await readLossCurve(path);
    if (points.length) evalCurves.push({ name: relative(runDir, path), points });
  }
  const rlCurves = [];
  for (const path of await findFiles(runDir, (f) => f === "ppo.jsonl")) {
    const points = await readRlCurve(path);
    if (points.length) rlCurves.push({ name: relative(runDir, path), points });
  }
  // Eval results live in one documented place, <run>/eval/<name>.json (where `selfalign eval --run` writes them).
  const evaluations = [];
  const evalDir = join(runDir, evalDirName);
  const evalFiles = (await readdir(evalDir, { withFileTypes: true }).catch(() => []))
    .filter((entry) => entry.isFile() && entry.name.endsWith(".json"))
    .map((entry) => join(evalDir, entry.name))
    .sort();
  for (const path of evalFiles) {
    const evaluation = await readEvaluation(runDir, path);
    if (evaluation) evaluations.push(evaluation);
  }

  return {
    run: {
      name: basename(runDir),
      ...(status.info?.createdAt ? { createdAt: String(status.info.createdAt) } : {}),
      ...(status.info?.constitutionHash ? { constitutionHash: String(status.info.constitutionHash) } : {}),
      ...(status.info?.backends ? { backends: status.info.backends } : {}),
    },
    generatedAt: new Date().toISOString(),
    stages,
    principleUsage: { overall, byType },
    redTeam,
    diversity: countVerbNouns(keptPrompts.map((r) => r.instruction)),
    lengths: {
      prompts: wordHistogram(keptPrompts.map((r) => (r.input ? `${r.instruction} ${r.input}` : r.instruction))),
      thoughts: wordHistogram(answered.map((r) => r.thoughts)),
      answers: wordHistogram(answered.map((r) => r.output)),
    },
    lossCurves,
    evalCurves,
    rlCurves,
    salmon: preferenceStats(judged, aggregated),
    evaluations,
    rounds: roundList,
    ratings: ratingHistograms(rated),
    agreement: ratingAgreement(rated),
    records,
  };
}

const roundKey = (round: number | undefined) => (round === undefined ? "" : String(round));

/** Score histograms per (round, aspect), rounds in order. */
export function ratingHistograms(rated: readonly ReportRecord[]): RatingHistogram[] {
  const out = new Map<string, RatingHistogram>();
  for (const record of rated) {
    const { aspect, score } = record.rating!;
    const key = `${roundKey(record.round)}/${aspect}`;
    const histogram = out.get(key) ?? {
      ...(record.round === undefined ? {} : { round: record.round }),
      aspect,
      counts: Array.from({ length: 10 }, () => 0),
      unreadable: 0,
    };
    if (score !== undefined && score >= 1 && score <= 10) histogram.counts[score - 1]!++;
    else histogram.unreadable++;
    out.set(key, histogram);
  }
  return [...out.values()].sort((a, b) => (a.round ?? 0) - (b.round ?? 0) || a.aspect.localeCompare(b.aspect));
}

/** Agreement of the first two aspects rated on the same records, per round. */
export function ratingAgreement(rated: readonly ReportRecord[]): RatingAgreement[] {
  const aspects = [...new Set(rated.map((record) => record.rating!.aspect))];
  if (aspects.length < 2) return [];
  const [first, second] = aspects.sort() as [string, string];
  const byRound = new Map<string, { round?: number; scores: Map<string, { a?: number; b?: number }> }>();
  for (const record of rated) {
    const { subject, aspect, score } = record.rating!;
    if (score === undefined || (aspect !== first && aspect !== second)) continue;
    const key = roundKey(record.round);
    const entry = byRound.get(key) ?? {
      ...(record.round === undefined ? {} : { round: record.round }),
      scores: new Map(),
    };
    const pair = entry.scores.get(subject) ?? {};
    if (aspect === first) pair.a = score;
    else pair.b = score;
    entry.scores.set(subject, pair);
    byRound.set(key, entry);
  }
  const out: RatingAgreement[] = [];
  for (const { round, scores } of byRound.values()) {
    const both = [...scores.values()].filter(
      (pair): pair is { a: number; b: number } => pair.a !== undefined && pair.b !== undefined,
    );
    if (both.length === 0) continue;
    const matrix = Array.from({ length: 10 }, () => Array.from({ length: 10 }, () => 0));
    for (const { a, b } of both) matrix[a - 1]![b - 1]!++;
    const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
    const ma = mean(both.map((pair) => pair.a));
    const mb = mean(both.map((pair) => pair.b));
    const cov = both.reduce((sum, pair) => sum + (pair.a - ma) * (pair.b - mb), 0);
    const va = both.reduce((sum, pair) => sum + (pair.a - ma) ** 2, 0);
    const vb = both.reduce((sum, pair) => sum + (pair.b - mb) ** 2, 0);
    out.push({
      ...(round === undefined ? {} : { round }),
      aspects: [first, second],
      pairs: both.length,
      exact: both.filter((pair) => pair.a === pair.b).length / both.length,
      withinOne: both.filter((pair) => Math.abs(pair.a - pair.b) <= 1).length / both.length,
      ...(va > 0 && vb > 0 ? { correlation: cov / Math.sqrt(va * vb) } : {}),
      matrix,
    });
  }
  return out.sort((a, b) => (a.round ?? 0) - (b.round ?? 0));
}
