import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../errors/index.js";
import { recordId } from "./record-id.js";
import { inShard, parseShard, parseShardDirName, shardDirName } from "./shard.js";

describe("parseShard", () => {
  it("parses i/n", () => {
    expect(parseShard("0/4")).toEqual({ index: 0, count: 4 });
    expect(parseShard(" 3 / 4 ")).toEqual({ index: 3, count: 4 });
  });

  it.each([
    "4/4",
    "1",
    "a/b",
    "-1/2",
    "0/0",
    "1/2/3",
    "",
  ])("rejects %j with a message saying what it should look like", (text) => {
    expect(() => parseShard(text)).toThrow(ConfigError);
    expect(() => parseShard(text)).toThrow(
      `--shard must look like 0/4 (shard index / shard count, index from 0 to count-1), got "${text}"`,
    );
  });

  it("names shard folders reversibly", () => {
    expect(shardDirName({ index: 2, count: 8 })).toBe("shard-2-of-8");
    expect(parseShardDirName("shard-2-of-8")).toEqual({ index: 2, count: 8 });
    expect(parseShardDirName("shard-8-of-8")).toBeUndefined();
    expect(parseShardDirName("records.jsonl")).toBeUndefined();
  });
});

describe("inShard", () => {
  it("puts every id in exactly one shard", () => {
    fc.assert(
      fc.property(fc.array(fc.string(), { maxLength: 50 }), fc.integer({ min: 1, max: 9 }), (ids, count) => {
        for (const id of ids) {
          const owners = Array.from({ length: count }, (_, index) => index).filter((index) =>
            inShard(id, { index, count }),
          );
          expect(owners).toHaveLength(1);
        }
      }),
    );
  });

  it("spreads ids roughly evenly", () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) {
      const id = recordId("x", i);
      counts[counts.findIndex((_, index) => inShard(id, { index, count: 4 }))]!++;
    }
    for (const count of counts) expect(count).toBeGreaterThan(800);
    expect(inShard("anything", undefined)).toBe(true);
  });
});
