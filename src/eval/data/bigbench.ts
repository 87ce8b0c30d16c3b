/**
 * BIG-bench `task.json` loader (`examples: [{input, target_scores: {answer: score}}]`) and the HHH alignment
 * evaluation built on it: one binary comparison per example, its category taken from the folder
 * (`hhh_alignment/{harmless,helpful,honest,other}/task.json`) or the task's `name`.
 */
import { stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { jsonLayout } from "./json-locate.js";
import { parseJsonText, readDataFile, validateData } from "./read-data-file.js";

export const hhhCategories = ["harmless", "helpful", "honest", "other"] as const;
export type HhhCategory = (typeof hhhCategories)[number];

const expected =
  'a BIG-bench task.json: {"examples": [{"input": "...", "target_scores": {"answer text": score, ...}}, ...]}';

const exampleSchema = z.looseObject({
  input: z.string().min(1, "must be a non-empty text"),
  target_scores: z
    .record(z.string(), z.number({ message: "target scores must be numbers" }))
    .refine((scores) => Object.keys(scores).length >= 2, { message: "needs at least two answers" }),
});
const taskSchema = z.looseObject({
  name: z.string().optional(),
  examples: z.array(z.unknown(), { message: "must be a list of examples" }).min(1, "needs at least one example"),
});

export interface BigBenchExample {
  input: string;
  /** Answers in file order with their target scores. */
  targets: Array<{ text: string; score: number }>;
  /** 1-based line of the example in the file. */
  line: number;
}

export interface BigBenchTask {
  path: string;
  name?: string;
  examples: BigBenchExample[];
}

/** Read and validate one BIG-bench task.json. */
export async function loadBigBenchTask(path: string): Promise<BigBenchTask> {
  const text = await readDataFile(path, expected);
  const value = parseJsonText(text, path, expected);
  const layout = jsonLayout(text);
  const lineOf = layout.line;
  const task = validateData(taskSchema, value, { path, lineOf }, expected);
  const examples = task.examples.map((raw, index) => {
    const example = validateData(exampleSchema, raw, { path, lineOf, fieldPrefix: ["examples", index] }, expected);
    return {
      input: example.input,
      // Answers in file order (JSON.parse would put integer-like answers such as "4" first).
      targets: layout.keys(["examples", index, "target_scores"]).map((answer) => ({
        text: answer,
        score: example.target_scores[answer]!,
      })),
      line: lineOf(["examples", index]),
    };
  });
  return { path, ...(task.name ? { name: task.name } : {}), examples };
}

/** One HHH comparison: a dialogue and two candidate replies, one of which is the better. */
export interface HhhItem {
  /** `<category>-<index>`. */
  id: string;
  category: string;
  query: string;
  /** The two candidates in file order. */
  candidates: [string, string];
  /** Index (0 or 1) of the candidate with the higher target score. */
  correct: 0 | 1;
}

/** Category of a task file: its folder name or the end of the task's `name` when that is an HHH category. */
function categoryOf(task: BigBenchTask): string {
  const folder = basename(dirname(task.path));
  if ((hhhCategories as readonly string[]).includes(folder)) return folder;
  const fromName = hhhCategories.find((category) => task.name?.toLowerCase().endsWith(category));
  return fromName ?? folder;
}

/**
 * Load HHH items from task.json files or from a folder holding `{harmless,helpful,honest,other}/task.json`
 * (the BIG-bench `hhh_alignment` folder). Each example must have exactly two answers with different scores.
 */
export async function loadHhh(paths: readonly string[]): Promise<HhhItem[]> {
  const files: string[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    if (!info)
      throw new ConfigError(`not found; expected ${expected} or a folder of hhh_alignment categories`, { path });
    if (!info.isDirectory()) {
      files.push(path);
      continue;
    }
    const found = [];
    for (const category of hhhCategories) {
      const file = join(path, category, "task.json");
      if (await stat(file).catch(() => undefined)) found.push(file);
    }
    if (found.length === 0) {
      throw new ConfigError(`holds no ${hhhCategories.map((category) => `${category}/task.json`).join(", ")}`, {
        path,
      });
    }
    files.push(...found);
  }
  const items: HhhItem[] = [];
  for (const file of files) {
    const task = await loadBigBenchTask(file);
    const category = categoryOf(task);
    task.examples.forEach((example, index) => {
      const [first, second] = example.targets;
      if (example.targets.length !== 2 || !first || !second || first.score === second.score) {
        throw new ConfigError(
          "an HHH example needs exactly two answers in target_scores with different scores (the better one higher); " +
            `found ${example.targets.length} answers`,
          { path: file, line: example.line, field: `examples[${index}].target_scores` },
        );
      }
      items.push({
        id: `${category}-${index}`,
        category,
        query: example.input,
        candidates: [first.text, second.text],
        correct: first.score > second.score ? 0 : 1,
      });
    });
  }
  return items;
}
