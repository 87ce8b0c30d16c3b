/**
 * Prompts from small files we write in each format: Alpaca JSON, Alpaca JSONL, chat `messages` JSONL, plain text and
 * Parquet in the layouts the hub serves (Alpaca columns; `messages` as list<struct<role, content>>). The same prompts
 * give the same records, ids included, whatever the format; bad rows name file, line (or row) and field.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SchemaElement } from "hyparquet";
import { parquetWriteFile } from "hyparquet-writer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../errors/index.js";
import { promptId, promptRecordSchema, readPrompts } from "./read-prompts.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-prompts-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}
const jsonl = (rows: unknown[]) => rows.map((row) => JSON.stringify(row)).join("\n") + "\n";

// Our own prompts; none has an input, so every format (text and chat included) can hold them.
const instructions = [
  "Write a limerick about a forgetful owl.",
  "What is the boiling point of water at the top of Mount Everest?",
  "Explain the difference between weather and climate.",
];
const alpacaRows = instructions.map((instruction) => ({ instruction, input: "", output: "(not read)" }));
const chatRows = instructions.map((instruction) => ({
  messages: [
    { role: "system", content: "You are helpful." },
    { role: "user", content: instruction },
    { role: "assistant", content: "(not read)" },
    { role: "user", content: "And another one?" },
  ],
}));

const text = (name: string): SchemaElement => ({
  name,
  type: "BYTE_ARRAY",
  converted_type: "UTF8",
  repetition_type: "OPTIONAL",
});

/** The hub's layout of an Alpaca dataset: instruction, input, output text columns. */
function writeAlpacaParquet(path: string, rows: Array<Record<string, string>>) {
  parquetWriteFile({
    filename: path,
    columnData: ["instruction", "input", "output"].map((name) => ({ name, data: rows.map((row) => row[name]) })),
    schema: [{ name: "root", num_children: 3 }, text("instruction"), text("input"), text("output")],
  });
}

/** The hub's layout of a chat dataset: messages as a list of {role, content} structs. */
function writeChatParquet(path: string, rows: typeof chatRows) {
  parquetWriteFile({
    filename: path,
    columnData: [{ name: "messages", data: rows.map((row) => row.messages) }],
    schema: [
      { name: "root", num_children: 1 },
      { name: "messages", repetition_type: "OPTIONAL", num_children: 1, converted_type: "LIST" },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
      text("role"),
      text("content"),
    ],
  });
}

async function expectRowError(promise: Promise<unknown>, where: { path: string; line?: number; field?: string }) {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  expect(error).toMatchObject(where);
  expect((error as Error).message).toContain(where.path);
  return error as ConfigError;
}

describe("readPrompts", () => {
  it("reads the same prompts to the same records from every format", async () => {
    const files = {
      json: await file("alpaca.json", JSON.stringify(alpacaRows, null, 2)),
      jsonl: await file("alpaca.jsonl", jsonl(alpacaRows)),
      chat: await file("chat.jsonl", jsonl(chatRows)),
      text: await file("prompts.txt", `${instructions.join("\n")}\n\n`),
      alpacaParquet: join(dir, "train-alpaca.parquet"),
      chatParquet: join(dir, "train-chat.parquet"),
    };
    writeAlpacaParquet(files.alpacaParquet, alpacaRows);
    writeChatParquet(files.chatParquet, chatRows);
    const expected = instructions.map((instruction) => ({ id: promptId(instruction), instruction, source: "mine" }));
    for (const [name, path] of Object.entries(files)) {
      const result = await readPrompts(path, { source: "mine" });
      expect(result.prompts, name).toEqual(expected);
      expect(result.rows, name).toBe(3);
      for (const record of result.prompts) promptRecordSchema.parse(record);
    }
    // Ids are hashes of the text: distinct prompts, distinct ids; the source defaults to the file's name.
    expect(new Set(expected.map((record) => record.id)).size).toBe(3);
    expect((await readPrompts(files.jsonl)).prompts[0]!.source).toBe("alpaca.jsonl");
    expect((await readPrompts(files.chatParquet)).format).toBe("parquet");
  });

  it("keeps the input, drops repeated prompts, stops at the limit, and reads other column names", async () => {
    const rows = [
      { instruction: "Summarise the text.", input: "Cats sleep a lot." },
      { instruction: "Summarise the text.", input: "Dogs bark." },
      { instruction: "  Summarise the text. ", input: "Cats sleep a lot.  " },
      { instruction: "Name a colour.", input: null },
    ];
    const path = await file("inputs.jsonl", jsonl(rows));
    const result = await readPrompts(path);
    expect(result.prompts.map(({ instruction, input }) => ({ instruction, input }))).toEqual([
      { instruction: "Summarise the text.", input: "Cats sleep a lot." },
      { instruction: "Summarise the text.", input: "Dogs bark." },
      { instruction: "Name a colour.", input: undefined },
    ]);
    expect(result.prompts[0]!.id).toBe(promptId("Summarise the text.", "Cats sleep a lot."));
    expect(result.prompts[0]!.id).not.toBe(result.prompts[1]!.id);
    expect(result.duplicates).toBe(1);
    expect((await readPrompts(path, { limit: 2 })).prompts).toHaveLength(2);

    // A Dolly-style file: instruction and context.
    const dolly = await file(
      "dolly.jsonl",
      jsonl([{ instruction: "Who wrote it?", context: "Hamlet is a play.", response: "Shakespeare." }]),
    );
    expect((await readPrompts(dolly, { fields: { input: "context" } })).prompts[0]).toMatchObject({
      instruction: "Who wrote it?",
      input: "Hamlet is a play.",
    });
    // A prompt/completion file, and a file whose name says nothing (format given).
    const promptCompletion = await file("pc.data", jsonl([{ prompt: "Say hi.", completion: "Hi." }]));
    const read = await readPrompts(promptCompletion, { format: "jsonl", fields: { instruction: "prompt" } });
    expect(read.prompts[0]!.instruction).toBe("Say hi.");
  });

  it("names file, line and field of a bad row in JSONL, JSON and text files, and the row in Parquet", async () => {
    let path = await file("bad.jsonl", jsonl([alpacaRows[0], { instruction: 42 }]));
    let error = await expectRowError(readPrompts(path), { path, line: 2, field: "instruction" });
    expect(error.message).toContain("expected a text, got number 42");

    path = await file("bad-missing.jsonl", jsonl([alpacaRows[0], alpacaRows[1], { text: "hello" }]));
    await expectRowError(readPrompts(path), { path, line: 3, field: "instruction" });

    path = await file("bad-chat.jsonl", jsonl([chatRows[0], { messages: [{ role: "assistant", content: "Hi" }] }]));
    error = await expectRowError(readPrompts(path), { path, line: 2, field: "messages" });
    expect(error.message).toContain('no message with role "user"');

    path = await file("bad-chat-content.jsonl", jsonl([{ messages: [{ role: "user", content: ["a"] }] }]));
    await expectRowError(readPrompts(path), { path, line: 1, field: "messages[0].content" });

    path = await file("bad.json", JSON.stringify([alpacaRows[0], { instruction: "   " }], null, 2));
    error = await expectRowError(readPrompts(path), { path, line: 8, field: "[1].instruction" });
    expect(error.message).toContain("is empty");

    path = await file("syntax.jsonl", '{"instruction": "a"}\n{"instruction": \n{"instruction": "c"}\n');
    await expectRowError(readPrompts(path), { path, line: 2 });

    path = await file("object.json", JSON.stringify({ instruction: "a" }));
    await expectRowError(readPrompts(path), { path, line: 1 });

    path = await file("empty.txt", "\n  \n");
    await expectRowError(readPrompts(path), { path });

    path = join(dir, "bad.parquet");
    writeAlpacaParquet(path, [alpacaRows[0]!, { ...alpacaRows[1]!, instruction: "" }]);
    await expectRowError(readPrompts(path), { path, field: "[1].instruction" });

    await expectRowError(readPrompts(join(dir, "nowhere.jsonl")), { path: join(dir, "nowhere.jsonl") });
    await expectRowError(readPrompts(await file("prompts.csv", "a,b\n")), { path: join(dir, "prompts.csv") });
  });
});
