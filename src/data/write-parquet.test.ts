/**
 * Parquet written by us, read back by hyparquet (the reader the hub's JavaScript tools use): the same rows, the
 * column types a dataset viewer shows, and the dataset card that lists them.
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from "hyparquet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ConfigError } from "../errors/index.js";
import { renderDatasetCard } from "./dataset-card.js";
import { constitutionHashMetadataKey, writeParquetDataset } from "./write-dataset.js";
import { inferParquetColumns, writeParquetRows } from "./write-parquet.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-parquet-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readBack(path: string) {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  return { rows: await parquetReadObjects({ file }), metadata, schema: parquetSchema(metadata) };
}

// Records shaped like the stages' (every field present in every row, as the stages write them).
const records = [
  {
    id: "a1f3",
    instruction: "Name three rivers in Africa.",
    input: "",
    round: 0,
    maxSimilarity: 0.25,
    kept: true,
    citedPrinciples: ["helpful", "ethical"],
    messages: [
      { role: "user", content: "Name three rivers in Africa." },
      { role: "assistant", content: "The Nile, the Congo and the Niger." },
    ],
    usage: { promptTokens: 12, completionTokens: 9 },
  },
  {
    id: "b2c4",
    instruction: "Translate «bonjour» into German | Spanish.",
    input: "Line one\nline two",
    round: 70000,
    maxSimilarity: 0,
    kept: false,
    citedPrinciples: [],
    messages: [{ role: "user", content: "Hi ✓" }],
    usage: { promptTokens: 3, completionTokens: 0, extra: [1, "x"] },
  },
];

describe("writeParquetRows", () => {
  it("writes rows that hyparquet reads back unchanged, with typed columns", async () => {
    const path = join(dir, "records.parquet");
    const result = await writeParquetRows(path, records, { metadata: { note: "hello" } });
    expect(result.columns.map((column) => [column.name, column.kind])).toEqual([
      ["id", "string"],
      ["instruction", "string"],
      ["input", "string"],
      ["round", "int32"],
      ["maxSimilarity", "double"],
      ["kept", "boolean"],
      ["citedPrinciples", "string-list"],
      ["messages", "struct-list"],
      ["usage", "json"],
    ]);
    const back = await readBack(path);
    expect(back.rows).toEqual(records);
    // The hub reads messages as list<struct<role, content>>, the chat-SFT layout.
    const messages = back.schema.children.find((child) => child.element.name === "messages")!;
    expect(messages.element.converted_type).toBe("LIST");
    expect(messages.children[0]!.children[0]!.children.map((child) => child.element.name)).toEqual(["role", "content"]);
    expect(back.metadata.key_value_metadata).toContainEqual({ key: "note", value: "hello" });
    // Written beside the target, then renamed: nothing is left behind.
    expect((await readdir(dir)).filter((name) => name.includes("partial"))).toEqual([]);
  });

  it("reads a field some records lack back as empty, and a column of mixed values as JSON", async () => {
    const rows = [
      { id: "x", note: "first" },
      { id: "y", score: 2.5 },
      { id: "z", score: 3, note: 4 },
    ];
    const columns = inferParquetColumns(rows);
    expect(columns).toEqual([
      { name: "id", kind: "string" },
      { name: "note", kind: "json" },
      { name: "score", kind: "double" },
    ]);
    const path = join(dir, "sparse.parquet");
    await writeParquetRows(path, rows);
    const back = (await readBack(path)).rows;
    // Parquet has a value or a null in every column of a row; dropping the nulls gives the records again.
    const present = back.map((row) => Object.fromEntries(Object.entries(row).filter(([, value]) => value != null)));
    expect(present).toEqual(rows);
  });

  it("writes an empty file from explicit columns, and refuses a value that does not fit its column", async () => {
    const path = join(dir, "empty.parquet");
    await writeParquetRows(path, [], { columns: [{ name: "instruction", kind: "string" }] });
    const back = await readBack(path);
    expect(back.rows).toEqual([]);
    expect(back.schema.children.map((child) => child.element.name)).toEqual(["instruction"]);

    const bad = join(dir, "bad.parquet");
    const error = await writeParquetRows(bad, [{ n: 1 }, { n: "two" }], {
      columns: [{ name: "n", kind: "int32" }],
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ path: bad, field: "n" });
    expect((error as Error).message).toContain("row 1");
    await expect(readdir(dir)).resolves.not.toContain("bad.parquet");
  });
});

describe("dataset folders", () => {
  it("writes each config's Parquet and a card listing configs, fields, counts and provenance", async () => {
    const out = join(dir, "dataset");
    const result = await writeParquetDataset(out, {
      title: "Test data",
      summary: "Two small files.",
      files: [
        {
          config: "alpaca",
          file: "alpaca.parquet",
          rows: records.map(({ instruction, input }) => ({ instruction, input })),
        },
        {
          config: "messages",
          file: "messages.parquet",
          rows: records.map(({ messages }) => ({ messages })),
          default: true,
        },
      ],
      fieldDescriptions: { instruction: "the request | with a bar" },
      constitutionHash: "c0ffee",
      command: "selfalign run selfalign.yaml",
      provenance: { "selfalign version": "9.9.9" },
      alsoAs: ["alpaca.jsonl"],
    });
    expect(result.parquet).toEqual([join(out, "alpaca.parquet"), join(out, "messages.parquet")]);
    const messages = await readBack(join(out, "messages.parquet"));
    expect(messages.rows).toEqual(records.map(({ messages }) => ({ messages })));
    expect(messages.metadata.key_value_metadata).toContainEqual({ key: constitutionHashMetadataKey, value: "c0ffee" });

    const card = await readFile(result.card, "utf8");
    const front = /^---\n([\s\S]*?)\n---\n/.exec(card);
    expect(parse(front![1]!)).toEqual({
      configs: [
        { config_name: "alpaca", data_files: [{ split: "train", path: "alpaca.parquet" }] },
        { config_name: "messages", data_files: [{ split: "train", path: "messages.parquet" }], default: true },
      ],
      tags: ["selfalign", "synthetic"],
    });
    expect(card).toContain("| alpaca | alpaca.parquet | 2 |");
    expect(card).toContain("| messages | list<struct<role: string, content: string>> |");
    expect(card).toContain("| instruction | string | the request \\| with a bar |");
    expect(card).toContain("- constitution hash: `c0ffee`");
    expect(card).toContain("- made by: `selfalign run selfalign.yaml`");
    expect(card).toContain("- selfalign version: 9.9.9");
    expect(card).toContain("`alpaca.jsonl`");
  });

  it("says when the command is not known", () => {
    const card = renderDatasetCard({ title: "t", summary: "s", files: [] });
    expect(card).toContain("- made by: not recorded");
  });
});
