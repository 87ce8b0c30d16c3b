import { beforeAll, describe, expect, it } from "vitest";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { filterVerboseAnswer, verboseBlacklist } from "./filters.js";

let constitution: Constitution;
beforeAll(async () => {
  constitution = await loadConstitution(defaultConstitutionDir());
});

const long =
  "Photosynthesis turns light into chemical energy. ".repeat(1) +
  "It happens in chloroplasts, using water and carbon dioxide to make sugar and oxygen for the plant.";

describe("verbose-clone filters", () => {
  it("keeps a finished answer whole", () => {
    const result = filterVerboseAnswer(` ${long} `, "stop", constitution.assistant);
    expect(result).toEqual({ kept: true, output: long, ended: true, repeatCut: false });
  });

  it("drops the last word of an unfinished answer and rejects it when short", () => {
    const result = filterVerboseAnswer("A short unfinished answer that was cu", "length", constitution.assistant);
    expect(result).toMatchObject({ kept: false, filter: "min-length", output: "A short unfinished answer that was" });
    const longer = filterVerboseAnswer(`${long} And then the plan`, "length", constitution.assistant);
    expect(longer).toMatchObject({ kept: true, ended: false, output: `${long} And then the` });
  });

  it("cuts repeated segments, including after backticks", () => {
    const text = `${long}\nUse \`x\`. Use \`x\`. More.`;
    const result = filterVerboseAnswer(text, "stop", constitution.assistant);
    expect(result).toMatchObject({ kept: true, repeatCut: true });
    // segments: "\nUse `", "x`", ".", " Use `", then "x`" again -> cut before it
    if (result.kept) expect(result.output).toBe(`${long}\nUse \`x\`. Use \``);
  });

  it("caps numbered lists at 12 items", () => {
    const items = Array.from({ length: 15 }, (_, i) => `${i + 1}. item number ${i + 1} explained`).join("\n");
    const result = filterVerboseAnswer(`Here is a list:\n${items}`, "stop", constitution.assistant);
    expect(result.kept).toBe(true);
    if (result.kept) {
      expect(result.output).toContain("12. item number 12");
      expect(result.output).not.toContain("13. item");
    }
  });

  it("rejects bad examples that copy the teacher prompt or wiki sections", () => {
    const { assistant } = constitution;
    expect(filterVerboseAnswer(`${long}\n## See also\n- more`, "stop", assistant)).toMatchObject({
      kept: false,
      filter: "bad-example",
      reason: 'contains "## See also"',
    });
    expect(filterVerboseAnswer(`${long} I am ${assistant.name} (extensive) now.`, "stop", assistant)).toMatchObject({
      filter: "bad-example",
    });
    const selfDescription = verboseBlacklist(assistant)[3]!;
    expect(selfDescription.length).toBeGreaterThan(20);
    expect(filterVerboseAnswer(`${long} ${selfDescription}`, "stop", assistant)).toMatchObject({
      filter: "bad-example",
    });
  });

  it("rejects empty answers", () => {
    expect(filterVerboseAnswer("   ", "stop", constitution.assistant)).toMatchObject({ kept: false, filter: "empty" });
  });
});
