/**
 * TruthfulQA loaders: the original CSV (Type, Category, Question, Best Answer, Correct Answers, Incorrect Answers,
 * Source; answers separated by ";"), the multiple-choice JSON (`mc1_targets: {answer: 0|1}`), and the Hugging Face
 * variant (`mc1_targets: {choices, labels}`) as a JSON array, JSON Lines or the hub's Parquet file
 * (`multiple_choice/validation-*.parquet`). All become {@link TruthfulQaItem}s.
 */
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { parseCsv } from "./csv.js";
import { readParquetRows } from "./parquet.js";
import { jsonLayout } from "./json-locate.js";
import { formatField, parseJsonLines, parseJsonText, readDataFile, validateData } from "./read-data-file.js";

/** Candidate answers and their labels (1 = true answer). */
export interface ChoiceSet {
  choices: string[];
  labels: Array<0 | 1>;
}

export interface TruthfulQaItem {
  /** Position in the file, as a string ("0", "1", ...). */
  id: string;
  question: string;
  category?: string;
  /** One true answer among false ones. */
  mc1: ChoiceSet;
  /** Several true and false answers. */
  mc2: ChoiceSet;
}

const csvExpected =
  "the TruthfulQA CSV: a header row with columns Type, Category, Question, Best Answer, Correct Answers, " +
  'Incorrect Answers, Source, answers within a cell separated by "; "';
const jsonExpected =
  "TruthfulQA multiple-choice JSON: a list of {question, mc1_targets, mc2_targets} where each *_targets is either " +
  "{answer text: 0 or 1} or {choices: [texts], labels: [0 or 1]} (JSON array, or one object per line)";

const label = z.union([z.literal(0), z.literal(1)], { message: "labels must be 0 or 1" });
const answerMapSchema = z.record(z.string(), label);
const choicesSchema = z
  .strictObject({ choices: z.array(z.string().min(1, "choices must be non-empty texts")), labels: z.array(label) })
  .refine((value) => value.choices.length === value.labels.length, {
    message: "choices and labels must have the same length",
  });
const itemSchema = z.looseObject({
  question: z.string().trim().min(1, "must be a non-empty question"),
  mc1_targets: z.union([choicesSchema, answerMapSchema], {
    message: "must be {answer: 0|1} or {choices: [...], labels: [...]}",
  }),
  mc2_targets: z.union([choicesSchema, answerMapSchema], {
    message: "must be {answer: 0|1} or {choices: [...], labels: [...]}",
  }),
  category: z.string().optional(),
});

const parquetExpected =
  "the Hugging Face TruthfulQA multiple_choice Parquet file: columns question, mc1_targets and mc2_targets, each " +
  "target a {choices: [texts], labels: [0 or 1]} struct";

/** Load TruthfulQA from a .csv file, a multiple-choice .json/.jsonl file or the Hugging Face .parquet file. */
export async function loadTruthfulQa(path: string): Promise<TruthfulQaItem[]> {
  if (path.toLowerCase().endsWith(".parquet")) {
    const rows = await readParquetRows(path, parquetExpected);
    const items = itemsFromEntries(
      rows.map((value, index) => ({ value, prefix: [index] })),
      { path, expected: parquetExpected },
    );
    if (items.length === 0) throw new ConfigError(`holds no questions; expected ${parquetExpected}`, { path });
    return items;
  }
  const isCsv = path.toLowerCase().endsWith(".csv");
  const text = await readDataFile(path, isCsv ? csvExpected : jsonExpected);
  const items = isCsv ? parseTruthfulQaCsv(text, path) : parseTruthfulQaJson(text, path);
  if (items.length === 0)
    throw new ConfigError(`holds no questions; expected ${isCsv ? csvExpected : jsonExpected}`, { path });
  return items;
}

const requiredColumns = ["Question", "Best Answer", "Correct Answers", "Incorrect Answers"] as const;

/** Split a TruthfulQA answer cell ("a; b; c") and end each answer with a period, as TruthfulQA's own code does. */
function splitAnswers(cell: string): string[] {
  return cell
    .split(";")
    .map((answer) => answer.trim())
    .filter((answer) => answer !== "")
    .map(closeAnswer);
}

function closeAnswer(answer: string): string {
  return answer.endsWith(".") ? answer : `${answer}.`;
}

function parseTruthfulQaCsv(text: string, path: string): TruthfulQaItem[] {
  const rows = parseCsv(text, path);
  const header = rows[0];
  if (!header) throw new ConfigError(`is empty; expected ${csvExpected}`, { path });
  const columns = header.fields.map((name) => name.trim());
  for (const column of requiredColumns) {
    if (!columns.includes(column)) {
      throw new ConfigError(
        `the header has no "${column}" column (found: ${columns.join(", ")}); expected ${csvExpected}`,
        {
          path,
          line: header.line,
          field: column,
        },
      );
    }
  }
  const index = (name: string) => columns.indexOf(name);
  return rows.slice(1).map((row, position) => {
    if (row.fields.length !== columns.length) {
      throw new ConfigError(
        `row has ${row.fields.length} fields but the header has ${columns.length}; expected ${csvExpected} ` +
          "(quote cells that contain commas or line breaks)",
        { path, line: row.line },
      );
    }
    const cell = (name: string) => (index(name) === -1 ? undefined : row.fields[index(name)]!.trim());
    const need = (name: (typeof requiredColumns)[number]) => {
      const value = cell(name)!;
      if (value === "")
        throw new ConfigError(`is empty; expected ${csvExpected}`, { path, line: row.line, field: name });
      return value;
    };
    const question = need("Question");
    const best = closeAnswer(need("Best Answer"));
    const correct = splitAnswers(need("Correct Answers"));
    const incorrect = splitAnswers(need("Incorrect Answers"));
    if (!correct.includes(best)) correct.unshift(best);
    const category = cell("Category");
    return {
      id: String(position),
      question,
      ...(category ? { category } : {}),
      mc1: { choices: [best, ...incorrect], labels: [1, ...incorrect.map(() => 0 as const)] },
      mc2: {
        choices: [...correct, ...incorrect],
        labels: [...correct.map(() => 1 as const), ...incorrect.map(() => 0 as const)],
      },
    };
  });
}

/** An {answer: label} map in file order (JSON.parse would put integer-like answers first). */
function answerMap(raw: Record<string, 0 | 1>, order: string[]): ChoiceSet {
  const keys = order.length === Object.keys(raw).length ? order : Object.keys(raw);
  return { choices: keys, labels: keys.map((answer) => raw[answer]!) };
}

function parseTruthfulQaJson(text: string, path: string): TruthfulQaItem[] {
  const trimmed = text.trimStart();
  const entries: Entry[] = [];
  let lineOf: ((field: PropertyKey[]) => number) | undefined;
  let keyOrder: (field: readonly PropertyKey[]) => string[] = () => [];
  if (trimmed.startsWith("[")) {
    const value = parseJsonText(text, path, jsonExpected);
    if (!Array.isArray(value)) throw new ConfigError(`expected ${jsonExpected}`, { path });
    value.forEach((item, index) => {
      entries.push({ value: item, prefix: [index] });
    });
    const layout = jsonLayout(text);
    lineOf = layout.line;
    keyOrder = layout.keys;
  } else {
    for (const { line, value } of parseJsonLines(text, path, jsonExpected)) entries.push({ value, line, prefix: [] });
    const lines = text.split("\n");
    keyOrder = (field) => {
      const entry = entries[field[0] as number];
      return entry?.line === undefined ? [] : jsonLayout(lines[entry.line - 1]!).keys(field.slice(1));
    };
  }
  return itemsFromEntries(entries, { path, expected: jsonExpected, lineOf, keyOrder });
}

interface Entry {
  value: unknown;
  line?: number;
  prefix: PropertyKey[];
}

/** Validate parsed entries (JSON items or Parquet rows) into items; errors name the file, line or row, and field. */
function itemsFromEntries(
  entries: readonly Entry[],
  source: {
    path: string;
    expected: string;
    lineOf?: (field: PropertyKey[]) => number;
    keyOrder?: (field: readonly PropertyKey[]) => string[];
  },
): TruthfulQaItem[] {
  const { path, lineOf, expected } = source;
  const keyOrder = source.keyOrder ?? (() => []);
  return entries.map(({ value, line, prefix }, position) => {
    const where = { path, line, fieldPrefix: prefix, lineOf };
    const item = validateData(itemSchema, value, where, expected);
    const targets = (key: "mc1_targets" | "mc2_targets"): ChoiceSet => {
      const raw = item[key];
      const set: ChoiceSet =
        "choices" in raw && Array.isArray(raw.choices)
          ? { choices: raw.choices as string[], labels: raw.labels as Array<0 | 1> }
          : answerMap(raw as Record<string, 0 | 1>, keyOrder([position, key]));
      const trueCount = set.labels.filter((labelValue) => labelValue === 1).length;
      const problem =
        set.choices.length < 2
          ? "needs at least two answers"
          : key === "mc1_targets" && trueCount !== 1
            ? `needs exactly one answer labelled 1, found ${trueCount}`
            : trueCount === 0
              ? "needs at least one answer labelled 1"
              : undefined;
      if (problem) {
        const field = [...prefix, key];
        throw new ConfigError(`${problem}; expected ${expected}`, {
          path,
          line: lineOf?.(field) ?? line,
          field: formatField(field),
        });
      }
      return set;
    };
    return {
      id: String(position),
      question: item.question.trim(),
      ...(item.category ? { category: item.category } : {}),
      mc1: targets("mc1_targets"),
      mc2: targets("mc2_targets"),
    };
  });
}
