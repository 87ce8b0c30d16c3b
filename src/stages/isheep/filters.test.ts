import { describe, expect, it } from "vitest";
import { filterGeneratedTask, ruleFilterNames, ruleFilterPair } from "./filters.js";

const pair = (output: string, instruction = "Explain how tides work.", input = "") => ({ instruction, input, output });
const verdict = (output: string, instruction?: string, input?: string) => {
  const result = ruleFilterPair(pair(output, instruction, input));
  return result.ok ? "kept" : result.filter;
};

describe("the rule filter (method-spec C.3, narrowed)", () => {
  it('keeps answers with "e.g.", "i.e." and "a.m." and tasks with "nonetheless"', () => {
    expect(
      verdict("Tides follow the moon, e.g. twice a day; i.e. roughly every 12.4 hours, at 6 a.m. and so on."),
    ).toBe("kept");
    expect(verdict("E.g. the Bay of Fundy has the largest range.")).toBe("kept");
    expect(
      verdict("They rise, nonetheless.", "Explain tides, nonetheless briefly.", "Nonetheless, keep it short."),
    ).toBe("kept");
    expect(
      verdict("None of the planets matter much; the moon does.", "Which of these, if any, cause tides? None?"),
    ).toBe("kept");
    // A question inside an answer (a FAQ) is not the model asking the user back.
    expect(verdict("Why two tides?\n\nWhat causes them?\nThe moon's pull on both sides of the earth.")).toBe("kept");
  });

  it("rejects what each rule is for, naming the narrowing in the reason", () => {
    expect(verdict("The moon pulls.\nUser: and the sun?")).toBe("role-marker");
    expect(verdict("Answer Choices: (a) moon (b) sun")).toBe("answer-choices");
    expect(verdict("The input is <noinput>.")).toBe("noinput-in-answer");
    expect(verdict("The moon pulls the sea.\n\nCan you tell me more about where you live?")).toBe("asks-back");
    expect(verdict("The moon pulls the sea.\n\nWould you like a diagram?")).toBe("asks-back");
    expect(verdict("A. the moon\nB. the sun\nC. the wind")).toBe("option-list");
    expect(verdict("潮汐 are caused by the moon.")).toBe("cjk");
    expect(verdict("The moon.", "Explain tides <noinput>")).toBe("noinput-in-task");
    expect(verdict("The moon.", "Explain the <topic> of tides.")).toBe("tag-in-task");
    expect(verdict("The moon.", "Explain tides.", "None")).toBe("placeholder-input");
    expect(verdict("The moon.", "Explain why tides happen twice a day.", "tides happen")).toBe("input-in-instruction");
    expect(verdict("  ")).toBe("empty-answer");
    const options = ruleFilterPair(pair("A. the moon\nB. the sun"));
    expect(options).toMatchObject({ ok: false, reason: expect.stringMatching(/narrowed: .*"e\.g\."/) });
    const placeholder = ruleFilterPair(pair("The moon.", "Explain tides.", "none"));
    expect(placeholder).toMatchObject({ ok: false, reason: expect.stringMatching(/narrowed: .*"nonetheless"/) });
    const question = ruleFilterPair(pair("The moon.\n\nAnything else?"));
    expect(question).toMatchObject({ ok: false, reason: expect.stringMatching(/narrowed: /) });
  });

  it("strips a leading answer label, and can turn rules off", () => {
    expect(ruleFilterPair(pair("答案：The moon pulls the sea."))).toEqual({
      ok: true,
      output: "The moon pulls the sea.",
    });
    expect(ruleFilterPair(pair("Answer: The moon."))).toEqual({ ok: true, output: "The moon." });
    expect(ruleFilterPair(pair("A. moon\nB. sun"), { disabled: ["option-list"] }).ok).toBe(true);
    expect(ruleFilterNames).toHaveLength(new Set(ruleFilterNames).size);
  });
});

describe("I-SHEEP's additions to the prompt filters (method-spec C.1)", () => {
  it("drops noinput leaks, merged items and URLs", () => {
    expect(filterGeneratedTask({ instruction: "Sort the list.", input: "no input" })?.filter).toBe("noinput-leak");
    expect(filterGeneratedTask({ instruction: "Sort it. 7. Instruction: Write", input: "" })?.filter).toBe(
      "merged-items",
    );
    expect(filterGeneratedTask({ instruction: "Sort it.", input: "a, b 8. Output: c" })?.filter).toBe("merged-items");
    expect(filterGeneratedTask({ instruction: "Summarise https://example.org", input: "" })?.filter).toBe("url");
    expect(filterGeneratedTask({ instruction: "Sort the list, e.g. by size.", input: "3, 1, 2" })).toBeUndefined();
  });
});
