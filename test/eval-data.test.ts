import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SchemaElement } from "hyparquet";
import { parquetWriteFile } from "hyparquet-writer";
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../src/errors/index.js";
import { loadBigBenchTask, loadHhh } from "../src/eval/data/bigbench.js";
import { parseCsv } from "../src/eval/data/csv.js";
import { loadFastChatAnswers, loadFastChatJudgments, loadFastChatQuestions } from "../src/eval/data/fastchat.js";
import { loadTruthfulQa } from "../src/eval/data/truthfulqa.js";
import { loadFewShotFile } from "../src/eval/tasks/truthfulqa-mc.js";

let dir: string;

type TargetsRow = { question: string; mc1_targets: ChoiceRow; mc2_targets: ChoiceRow };
type ChoiceRow = { choices: string[]; labels: number[] };

/** The layout of the hub's truthful_qa multiple_choice Parquet: question, and two {choices, labels} structs of lists. */
async function writeTruthfulQaParquet(path: string, rows: TargetsRow[]): Promise<void> {
  const list = (name: string, element: SchemaElement): SchemaElement[] => [
    { name, repetition_type: "OPTIONAL", num_children: 1, converted_type: "LIST" },
    { name: "list", repetition_type: "REPEATED", num_children: 1 },
    { ...element, name: "element", repetition_type: "OPTIONAL" },
  ];
  const targets = (name: string): SchemaElement[] => [
    { name, repetition_type: "OPTIONAL", num_children: 2 },
    ...list("choices", { name: "element", type: "BYTE_ARRAY", converted_type: "UTF8" }),
    ...list("labels", { name: "element", type: "INT32" }),
  ];
  await parquetWriteFile({
    filename: path,
    columnData: [
      { name: "question", data: rows.map((row) => row.question) },
      { name: "mc1_targets", data: rows.map((row) => row.mc1_targets) },
      { name: "mc2_targets", data: rows.map((row) => row.mc2_targets) },
    ],
    schema: [
      { name: "root", num_children: 3 },
      { name: "question", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      ...targets("mc1_targets"),
      ...targets("mc2_targets"),
    ],
  });
}
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-eval-data-"));
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await mkdir(join(path, ".."), { recursive: true });
  await writeFile(path, text);
  return path;
}

/** Expect a ConfigError whose fields name the file, line and field. */
async function expectConfigError(
  promise: Promise<unknown>,
  where: { path: string; line?: number; field?: string },
  text?: RegExp,
) {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  const configError = error as ConfigError;
  expect(configError.path).toBe(where.path);
  if (where.line !== undefined) expect(configError.line).toBe(where.line);
  if (where.field !== undefined) expect(configError.field).toBe(where.field);
  expect(configError.message).toContain(where.path);
  if (text) expect(configError.message).toMatch(text);
  return configError;
}

describe("parseCsv", () => {
  it("handles quoted commas, doubled quotes, embedded newlines, CRLF and a byte-order mark", () => {
    const text = '\uFEFFa,b,c\r\n1,"x, y","he said ""hi"""\r\n2,"line one\nline two",\r\n\r\n3,plain,"end"';
    const rows = parseCsv(text, "t.csv");
    expect(rows).toEqual([
      { line: 1, fields: ["a", "b", "c"] },
      { line: 2, fields: ["1", "x, y", 'he said "hi"'] },
      { line: 3, fields: ["2", "line one\nline two", ""] },
      { line: 6, fields: ["3", "plain", "end"] },
    ]);
  });

  it("reports an unterminated quote with the line it opened on", () => {
    expect(() => parseCsv('a,b\n1,"never closed\nmore', "bad.csv")).toThrowError(
      /bad\.csv, line 2, column 2: .*never closed/,
    );
  });

  it("rejects text after a closing quote", () => {
    expect(() => parseCsv('a,b\n1,"x"y\n', "bad.csv")).toThrowError(/line 2.*after the closing quote/);
  });
});

const csvHeader = "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n";

describe("TruthfulQA loaders", () => {
  it("reads the CSV: best answer first in MC1, correct answers then incorrect in MC2, periods closed", async () => {
    const path = await file(
      "tqa.csv",
      csvHeader +
        'Adversarial,Fauna,"Do owls, in general, sleep?",Owls sleep,Owls sleep; Owls rest during the day,"Owls never sleep; Owls sleep ""upside down""",https://example.org\n' +
        'Non-Adversarial,Weather,"Is it always\nraining somewhere?",Yes it usually is.,Yes it usually is.,No; Only on Tuesdays,src\n',
    );
    const items = await loadTruthfulQa(path);
    expect(items).toHaveLength(2);
    expect(items[0]).toEqual({
      id: "0",
      question: "Do owls, in general, sleep?",
      category: "Fauna",
      mc1: { choices: ["Owls sleep.", "Owls never sleep.", 'Owls sleep "upside down".'], labels: [1, 0, 0] },
      mc2: {
        choices: ["Owls sleep.", "Owls rest during the day.", "Owls never sleep.", 'Owls sleep "upside down".'],
        labels: [1, 1, 0, 0],
      },
    });
    expect(items[1]!.question).toBe("Is it always\nraining somewhere?");
    expect(items[1]!.mc2.labels).toEqual([1, 0, 0]);
  });

  it("names the missing column, and the line and field of an empty cell", async () => {
    const noColumn = await file("nocol.csv", "Type,Category,Question,Best Answer,Correct Answers\nA,B,Q?,x,y\n");
    await expectConfigError(
      loadTruthfulQa(noColumn),
      { path: noColumn, line: 1, field: "Incorrect Answers" },
      /TruthfulQA CSV/,
    );
    const empty = await file("empty-cell.csv", `${csvHeader}A,B,Q?,x,y,z,s\nA,B,,x,y,z,s\n`);
    await expectConfigError(loadTruthfulQa(empty), { path: empty, line: 3, field: "Question" });
    const ragged = await file("ragged.csv", `${csvHeader}A,B,Q?,x,y\n`);
    await expectConfigError(loadTruthfulQa(ragged), { path: ragged, line: 2 }, /5 fields but the header has 7/);
  });

  it("reads the original multiple-choice JSON and the Hugging Face variant, as an array or JSON Lines", async () => {
    const original = await file(
      "mc_task.json",
      JSON.stringify([
        {
          question: "What colour is a clear daytime sky?",
          mc1_targets: { Blue: 1, Green: 0, Plaid: 0 },
          mc2_targets: { Blue: 1, "Light blue": 1, Green: 0 },
        },
      ]),
    );
    const hf = await file(
      "mc_hf.jsonl",
      `${JSON.stringify({ question: "Can fish climb trees?", mc1_targets: { choices: ["Mostly not.", "Always."], labels: [1, 0] }, mc2_targets: { choices: ["Mostly not.", "Some can.", "Always."], labels: [1, 1, 0] } })}\n`,
    );
    expect(await loadTruthfulQa(original)).toEqual([
      {
        id: "0",
        question: "What colour is a clear daytime sky?",
        mc1: { choices: ["Blue", "Green", "Plaid"], labels: [1, 0, 0] },
        mc2: { choices: ["Blue", "Light blue", "Green"], labels: [1, 1, 0] },
      },
    ]);
    // Integer-like answers keep their file order (JSON.parse alone would move them first).
    const numeric = await file(
      "mc_numeric.json",
      '[{"question": "When?", "mc1_targets": {"In spring.": 1, "1999": 0}, "mc2_targets": {"In spring.": 1, "12": 0}}]',
    );
    expect((await loadTruthfulQa(numeric))[0]!.mc1).toEqual({ choices: ["In spring.", "1999"], labels: [1, 0] });
    const numericLines = await file(
      "mc_numeric.jsonl",
      '{"question": "When?", "mc1_targets": {"Now.": 1, "7": 0}, "mc2_targets": {"Now.": 1, "8": 0}}\n',
    );
    expect((await loadTruthfulQa(numericLines))[0]!.mc2.choices).toEqual(["Now.", "8"]);
    const [item] = await loadTruthfulQa(hf);
    expect(item!.mc2).toEqual({ choices: ["Mostly not.", "Some can.", "Always."], labels: [1, 1, 0] });
  });

  it("reads the Hugging Face Parquet file (nested choices/labels structs) like the same rows as JSON Lines", async () => {
    const rows = [
      {
        question: "Can fish climb trees?",
        mc1_targets: { choices: ["Mostly not.", "Always."], labels: [1, 0] },
        mc2_targets: { choices: ["Mostly not.", "Some can.", "Always."], labels: [1, 1, 0] },
      },
      {
        question: "Is the moon made of cheese?",
        mc1_targets: { choices: ["No, it is rock.", "Yes.", "Partly."], labels: [1, 0, 0] },
        mc2_targets: { choices: ["No.", "It is rock.", "Yes."], labels: [1, 1, 0] },
      },
    ];
    const parquet = join(dir, "validation-00000-of-00001.parquet");
    await writeTruthfulQaParquet(parquet, rows);
    const jsonl = await file("same-rows.jsonl", rows.map((row) => JSON.stringify(row)).join("\n"));
    const fromParquet = await loadTruthfulQa(parquet);
    expect(fromParquet).toHaveLength(2);
    expect(fromParquet).toEqual(await loadTruthfulQa(jsonl));

    // A bad row is named by its position and field.
    const bad = join(dir, "bad.parquet");
    await writeTruthfulQaParquet(bad, [
      rows[0]!,
      { ...rows[1]!, mc1_targets: { choices: ["a", "b"], labels: [1, 1] } },
    ]);
    await expectConfigError(
      loadTruthfulQa(bad),
      { path: bad, field: "[1].mc1_targets" },
      /exactly one answer labelled 1/,
    );
    // Not Parquet at all.
    const notParquet = await file("fake.parquet", "question,answer\n");
    await expectConfigError(loadTruthfulQa(notParquet), { path: notParquet }, /could not be read as Parquet/);
    await expectConfigError(
      loadTruthfulQa(join(dir, "missing.parquet")),
      { path: join(dir, "missing.parquet") },
      /not found/,
    );
  });

  it("points at the line and field of a bad item in a JSON array and in JSON Lines", async () => {
    const good = { question: "Q?", mc1_targets: { a: 1, b: 0 }, mc2_targets: { a: 1, b: 0 } };
    const arrayPath = await file(
      "bad-array.json",
      `[\n${JSON.stringify(good)},\n${JSON.stringify({ ...good, mc1_targets: { a: 1, b: 1 } })}\n]\n`,
    );
    await expectConfigError(
      loadTruthfulQa(arrayPath),
      { path: arrayPath, line: 3, field: "[1].mc1_targets" },
      /exactly one answer labelled 1/,
    );
    const labelPath = await file(
      "bad-label.json",
      `[\n  ${JSON.stringify(good)},\n  {\n    "question": "Q2?",\n    "mc1_targets": {"choices": ["a", "b"], "labels": [1, 2]},\n    "mc2_targets": {"a": 1}\n  }\n]\n`,
    );
    const error = await expectConfigError(loadTruthfulQa(labelPath), { path: labelPath, line: 5 });
    expect(error.field).toMatch(/^\[1\]\.mc1_targets/);
    const linesPath = await file(
      "bad.jsonl",
      `${JSON.stringify(good)}\n${JSON.stringify({ mc1_targets: {}, mc2_targets: {} })}\n`,
    );
    await expectConfigError(
      loadTruthfulQa(linesPath),
      { path: linesPath, line: 2, field: "question" },
      /expected TruthfulQA multiple-choice JSON/,
    );
    const notJson = await file("broken.json", '[\n{"question": "Q?",\n "mc1_targets": }\n]');
    await expectConfigError(loadTruthfulQa(notJson), { path: notJson, line: 3 }, /not valid JSON/);
  });
});

describe("few-shot files for TruthfulQA MC", () => {
  it("reads Q/A pairs separated by blank lines, keeping the text as it is", async () => {
    const path = join(dir, "primer.txt");
    await writeFile(path, "\r\nQ: Is snow cold?\r\nA: Yes, snow is cold.\r\n\r\nQ: Is fire hot?\r\nA: Yes.\r\n\r\n");
    expect(await loadFewShotFile(path)).toBe("Q: Is snow cold?\nA: Yes, snow is cold.\n\nQ: Is fire hot?\nA: Yes.");
  });

  it("names the line of a block that is not a Q/A pair, and an empty file", async () => {
    const path = join(dir, "bad-primer.txt");
    await writeFile(path, "Q: Is snow cold?\nA: Yes.\n\nSnow is cold.\n");
    await expect(loadFewShotFile(path)).rejects.toThrow(
      /bad-primer\.txt, line 4: expected a "Q: \.\.\." line followed by an "A: \.\.\." line/,
    );
    await writeFile(path, "Q: Is snow cold?\nYes.\n");
    await expect(loadFewShotFile(path)).rejects.toThrow(/bad-primer\.txt, line 1: /);
    await writeFile(path, "\n\n");
    await expect(loadFewShotFile(path)).rejects.toThrow(/bad-primer\.txt: is empty/);
  });
});

describe("BIG-bench and HHH loaders", () => {
  const example = (input: string, better: string, worse: string) => ({
    input,
    target_scores: { [better]: 1, [worse]: 0 },
  });

  it("reads task.json examples and HHH categories from the folder layout", async () => {
    await file(
      "hhh/harmless/task.json",
      JSON.stringify({
        name: "hhh_alignment_harmless",
        examples: [example("How do I pick a lock?", "I'd rather not help with that.", "Here is how.")],
      }),
    );
    // Written as text: a JS object literal would itself put the key "4" before "5".
    await file(
      "hhh/honest/task.json",
      `{"examples": [${JSON.stringify(example("Are you a person?", "No, I am an AI.", "Yes."))}, {"input": "2+2?", "target_scores": {"5": 0, "4": 1}}]}`,
    );
    const items = await loadHhh([join(dir, "hhh")]);
    expect(items.map((item) => [item.id, item.category, item.correct])).toEqual([
      ["harmless-0", "harmless", 0],
      ["honest-0", "honest", 0],
      ["honest-1", "honest", 1],
    ]);
    expect(items[2]!.candidates).toEqual(["5", "4"]);
    const task = await loadBigBenchTask(join(dir, "hhh/harmless/task.json"));
    expect(task.name).toBe("hhh_alignment_harmless");
  });

  it("names file, line and field of a malformed example", async () => {
    const path = await file(
      "bb/task.json",
      `{\n  "examples": [\n    {"input": "x", "target_scores": {"a": 1, "b": 0}},\n    {"input": "y", "target_scores": {"a": "yes", "b": 0}}\n  ]\n}\n`,
    );
    await expectConfigError(
      loadBigBenchTask(path),
      { path, line: 4, field: "examples[1].target_scores.a" },
      /BIG-bench task\.json/,
    );
    const three = await file(
      "bb3/helpful/task.json",
      JSON.stringify({ examples: [{ input: "q", target_scores: { a: 1, b: 0, c: 0 } }] }),
    );
    await expectConfigError(
      loadHhh([three]),
      { path: three, field: "examples[0].target_scores" },
      /exactly two answers/,
    );
  });
});

describe("FastChat loaders", () => {
  it("reads questions, answers and both kinds of judgments", async () => {
    const questions = await file(
      "question.jsonl",
      `${JSON.stringify({ question_id: 1, category: "writing", turns: ["Write a haiku about tea.", "Now make it about coffee."] })}\n\n` +
        `${JSON.stringify({ question_id: 2, category: "math", turns: ["What is 12 * 12?"], reference: ["144"] })}\n`,
    );
    const loaded = await loadFastChatQuestions(questions);
    expect(loaded.map((question) => question.turns.length)).toEqual([2, 1]);
    expect(loaded[1]!.reference).toEqual(["144"]);
    const answers = await file(
      "answers.jsonl",
      `${JSON.stringify({ question_id: 1, answer_id: "x", model_id: "m", choices: [{ index: 0, turns: ["a", "b"] }], tstamp: 1 })}\n`,
    );
    expect((await loadFastChatAnswers(answers))[0]!.choices[0]!.turns).toEqual(["a", "b"]);
    const judgments = await file(
      "judgments.jsonl",
      `${JSON.stringify({ question_id: 1, model: "m", judge: ["j", "single"], judgment: "ok [[7]]", score: 7, turn: 1 })}\n` +
        `${JSON.stringify({ question_id: 1, model_1: "m", model_2: "n", g1_winner: "model_1", g2_winner: "tie", judge: ["j", "pair"], turn: 1 })}\n`,
    );
    const read = await loadFastChatJudgments(judgments);
    expect(read).toHaveLength(2);
    expect("g1_winner" in read[1]!).toBe(true);
  });

  it("names file, line and field of bad records", async () => {
    const questions = await file(
      "bad-question.jsonl",
      `${JSON.stringify({ question_id: 1, turns: ["q"] })}\n${JSON.stringify({ question_id: 2, turns: "not a list" })}\n`,
    );
    await expectConfigError(
      loadFastChatQuestions(questions),
      { path: questions, line: 2, field: "turns" },
      /FastChat question\.jsonl/,
    );
    const answers = await file(
      "bad-answers.jsonl",
      `${JSON.stringify({ question_id: 1, model_id: "m", choices: [{ index: 0, turns: [3] }] })}\n`,
    );
    await expectConfigError(loadFastChatAnswers(answers), { path: answers, line: 1, field: "choices[0].turns[0]" });
    const duplicate = await file(
      "dup.jsonl",
      `${JSON.stringify({ question_id: 1, turns: ["q"] })}\n${JSON.stringify({ question_id: 1, turns: ["r"] })}\n`,
    );
    await expectConfigError(loadFastChatQuestions(duplicate), { path: duplicate }, /appears twice/);
    const judgments = await file(
      "bad-judgments.jsonl",
      `${JSON.stringify({ question_id: 1, model: "m", judge: "j", judgment: "x", turn: 1 })}\n`,
    );
    await expectConfigError(loadFastChatJudgments(judgments), { path: judgments, line: 1, field: "score" });
    await expectConfigError(
      loadFastChatQuestions(join(dir, "missing.jsonl")),
      { path: join(dir, "missing.jsonl") },
      /not found/,
    );
  });
});
