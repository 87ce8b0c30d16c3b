import { describe, expect, it } from "vitest";
import { encodeRewardLabel, openRlhfRewardRequestSchema, parseRewardLabel } from "./openrlhf-request.js";

describe("OpenRLHF reward request", () => {
  it("takes one query with its prompt and label, and refuses lists of different lengths", () => {
    expect(openRlhfRewardRequestSchema.safeParse({ query: ["q"], prompts: ["p"], labels: [""] }).success).toBe(true);
    const mismatched = openRlhfRewardRequestSchema.safeParse({ query: ["q"], prompts: ["p", "p2"] });
    expect(mismatched.success).toBe(false);
    expect(mismatched.error?.issues[0]).toMatchObject({ path: ["prompts"] });
    expect(openRlhfRewardRequestSchema.safeParse({ query: [] }).success).toBe(false);
    expect(openRlhfRewardRequestSchema.safeParse({ query: "q" }).success).toBe(false);
  });

  it("reads our JSON label, a raw instruction, or nothing", () => {
    const label = encodeRewardLabel({ instruction: "Add 2 and 2.", promptType: "reasoning" });
    expect(JSON.parse(label)).toEqual({ instruction: "Add 2 and 2.", promptType: "reasoning" });
    expect(parseRewardLabel(label)).toEqual({ instruction: "Add 2 and 2.", promptType: "reasoning" });
    expect(parseRewardLabel({ instruction: "Hi", input: "there" })).toEqual({ instruction: "Hi", input: "there" });
    expect(parseRewardLabel("Name a colour.")).toEqual({ instruction: "Name a colour." });
    // JSON that is not our label is an instruction that happens to look like JSON.
    expect(parseRewardLabel('{"a": 1}')).toEqual({ instruction: '{"a": 1}' });
    expect(parseRewardLabel("{not json")).toEqual({ instruction: "{not json" });
    expect(parseRewardLabel("")).toBeUndefined();
    expect(parseRewardLabel(null)).toBeUndefined();
    expect(() => encodeRewardLabel({ instruction: "x", promptType: "poetry" as "general" })).toThrow();
  });
});
