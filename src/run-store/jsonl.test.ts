import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { JsonlAppender, JsonlParser, readJsonl, scanJsonl } from "./jsonl.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-jsonl-"));
});

describe("readJsonl", () => {
  it("reads a missing file as empty", async () => {
    expect(await readJsonl(join(dir, "none.jsonl"))).toEqual({ records: [], tornLines: 0, validBytes: 0 });
  });

  it("round-trips appended records, including text with newlines and unicode", async () => {
    const path = join(dir, "a.jsonl");
    const appender = new JsonlAppender(path);
    const records = [
      { id: "a", text: "line one\nline two\u2028" },
      { id: "b", parentId: "a", n: 2 },
    ];
    for (const record of records) appender.append(record);
    appender.close();
    expect((await readJsonl(path)).records).toEqual(records);
  });

  it("drops a torn last line without a newline, and cuts it away with repair", async () => {
    const path = join(dir, "torn.jsonl");
    await writeFile(path, '{"id":"a"}\n{"id":"b","te');
    const read = await readJsonl(path);
    expect(read.records).toEqual([{ id: "a" }]);
    expect(read.tornLines).toBe(1);
    expect(await readFile(path, "utf8")).toBe('{"id":"a"}\n{"id":"b","te');
    await readJsonl(path, { repair: true });
    expect(await readFile(path, "utf8")).toBe('{"id":"a"}\n');
  });

  it("drops a last line that ends in a newline but is not JSON", async () => {
    const path = join(dir, "torn2.jsonl");
    await writeFile(path, '{"id":"a"}\n{"id":"b","te\n');
    const read = await readJsonl(path, { repair: true });
    expect(read).toMatchObject({ records: [{ id: "a" }], tornLines: 1 });
    expect(await readFile(path, "utf8")).toBe('{"id":"a"}\n');
  });

  it("reports corruption in the middle of a file with its path and line", async () => {
    const path = join(dir, "bad.jsonl");
    await writeFile(path, '{"id":"a"}\nnot json\n{"id":"c"}\n');
    const error = await readJsonl(path).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).line).toBe(2);
    expect((error as ConfigError).message).toMatch(
      new RegExp(`^${path.replace(/[/\\.]/g, "\\$&")}, line 2: line is not valid JSON`),
    );
  });

  it("requires records to be objects with a string id", async () => {
    const path = join(dir, "noid.jsonl");
    await writeFile(path, '{"id":"a"}\n{"text":"x"}\n');
    await expect(readJsonl(path)).rejects.toThrow(
      /line 2, id: expected a record with a non-empty string "id", got none/,
    );
    await writeFile(path, "[1,2]\n");
    await expect(readJsonl(path)).rejects.toThrow(/line 1: expected a JSON object \(a record\), got an array/);
  });

  it("validates with a schema and names the field", async () => {
    const path = join(dir, "schema.jsonl");
    await writeFile(path, '{"id":"a","output":"ok"}\n{"id":"b","output":3}\n');
    const schema = z.object({ id: z.string(), output: z.string() });
    await expect(readJsonl(path, { schema })).rejects.toThrow(/line 2, output: record b:/);
  });

  it("refuses to write a record without an id", () => {
    const appender = new JsonlAppender(join(dir, "w.jsonl"));
    expect(() => appender.append({ id: "" })).toThrow(/without a non-empty string "id"/);
  });
});

describe("JsonlParser", () => {
  const record = fc.record({ id: fc.string({ minLength: 1 }), text: fc.string({ unit: "grapheme" }) });

  it("gives the same records and torn-line verdict however the bytes are split into chunks", () => {
    fc.assert(
      fc.property(
        fc.array(record, { maxLength: 8 }),
        fc.option(fc.double({ min: 0.01, max: 0.99, noNaN: true }), { nil: undefined }),
        fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 6 }),
        (records, tornFraction, cuts) => {
          let text = records.map((item) => `${JSON.stringify(item)}\n`).join("");
          const valid = Buffer.byteLength(text);
          if (tornFraction !== undefined) {
            const line = JSON.stringify({ id: "torn", text: "partial" });
            text += line.slice(0, Math.max(1, Math.floor(line.length * tornFraction)));
          }
          const bytes = Buffer.from(text);
          const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
          const seen: unknown[] = [];
          const parser = new JsonlParser("f.jsonl", (item) => seen.push(item));
          let start = 0;
          for (const point of [...points, bytes.length]) {
            parser.push(bytes.subarray(start, point));
            start = point;
          }
          expect(seen).toEqual(records);
          expect(parser.end()).toEqual({ tornLines: tornFraction === undefined ? 0 : 1, validBytes: valid });
        },
      ),
    );
  });

  it("streams a file larger than its read buffer", async () => {
    const path = join(dir, "big.jsonl");
    const records = Array.from({ length: 3000 }, (_, n) => ({ id: `r${n}`, text: "x".repeat(700 + (n % 13)) }));
    await writeFile(path, `${records.map((item) => JSON.stringify(item)).join("\n")}\n{"id":"torn`);
    const ids: string[] = [];
    const result = await scanJsonl<{ id: string }>(path, (item) => ids.push(item.id), { repair: true });
    expect(ids).toEqual(records.map((item) => item.id));
    expect(result.tornLines).toBe(1);
    expect((await readFile(path, "utf8")).endsWith('"}\n')).toBe(true);
  });
});
