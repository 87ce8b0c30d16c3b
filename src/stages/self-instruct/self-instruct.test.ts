import { describe, expect, it } from "vitest";
import { filterSelfInstructTask } from "./filters.js";
import { parseSelfInstruct } from "./parse.js";
import { buildSelfInstructPrompt } from "./prompt.js";

describe("buildSelfInstructPrompt", () => {
  it("renders demos as a numbered ### list and ends with the next instruction cue", () => {
    const prompt = buildSelfInstructPrompt([
      { instruction: "Suggest three   names for a bakery:" },
      { instruction: "Rewrite this sentence in the passive voice.", input: "The cat chased the mouse." },
    ]);
    expect(prompt.startsWith("You are asked to invent 20 different task instructions.")).toBe(true);
    expect(prompt.slice(prompt.indexOf("List of 20 tasks:"))).toMatchInlineSnapshot(`
      "List of 20 tasks:
      ###
      1. Instruction: Suggest three names for a bakery
      1. Input:
      <noinput>
      ###
      2. Instruction: Rewrite this sentence in the passive voice.
      2. Input:
      The cat chased the mouse.
      ###
      3. Instruction:"
    `);
  });
});

describe("parseSelfInstruct", () => {
  it("parses a clean continuation and drops the truncated last item", () => {
    const completion = ` Name two rivers that flow through Germany.
6. Input:
<noinput>
###
7. Instruction: Summarize the paragraph in one sentence.
7. Input:
The city council met on Tuesday to discuss the new bike lanes. After a long debate, members voted to fund a pilot.
###
8. Instruction: Classify the following email as spam or not spam.
8. In`;
    const result = parseSelfInstruct(completion, "length", 6);
    expect(result.droppedLast).toBe(true);
    expect(result.tasks).toEqual([
      { ok: true, position: 0, instruction: "Name two rivers that flow through Germany.", input: "" },
      {
        ok: true,
        position: 1,
        instruction: "Summarize the paragraph in one sentence.",
        input:
          "The city council met on Tuesday to discuss the new bike lanes. After a long debate, members voted to fund a pilot.",
      },
    ]);
  });

  it("tolerates missing inputs, <NoInput>, stray outputs, misnumbering and junk", () => {
    const completion = ` Tell me a fun fact about octopuses.
###
7. Instruction: Convert 10 miles to kilometres.
7. Input: <NoInput>
7. Output: 16.09 km
###
9.Instruction:Give an antonym for "brave".
###
Here is some text that is not a task
###
10. Instruction:
10. Input: nothing
###
11. Instruction: Write a haiku about rain.
11. Instruction: Write a limerick.
###
`;
    const result = parseSelfInstruct(completion, "stop", 6);
    expect(result.droppedLast).toBe(false);
    expect(result.tasks).toEqual([
      { ok: true, position: 0, instruction: "Tell me a fun fact about octopuses.", input: "" },
      { ok: true, position: 1, instruction: "Convert 10 miles to kilometres.", input: "" },
      { ok: true, position: 2, instruction: 'Give an antonym for "brave".', input: "" },
      expect.objectContaining({ ok: false, position: 3, reason: "no `N. Instruction:` line in the item" }),
      expect.objectContaining({ ok: false, position: 4, reason: "the instruction is empty" }),
      expect.objectContaining({ ok: false, position: 5, reason: "two instructions in one item (a missing `###`)" }),
    ]);
  });

  it("returns nothing from a completion that never closed its first item", () => {
    expect(parseSelfInstruct(" Describe the water cycle and", "length", 6).tasks).toEqual([]);
  });
});

describe("filterSelfInstructTask", () => {
  const pass = { instruction: "Explain how a bill becomes law.", input: "" };
  it("passes a good task", () => {
    expect(filterSelfInstructTask(pass)).toBeUndefined();
  });
  it.each([
    [{ instruction: "Write a poem.", input: "" }, "word-count", "instruction has 3 words; allowed 4..150"],
    [
      { instruction: `Explain ${"very ".repeat(150)}much.`, input: "" },
      "word-count",
      "instruction has 152 words; allowed 4..150",
    ],
    [
      { instruction: "Describe the image in detail please.", input: "" },
      "keyword-blacklist",
      'mentions "image", a task a text-only model cannot do',
    ],
    [
      { instruction: "Summarize the text below for me.", input: "Open the FILE first." },
      "keyword-blacklist",
      'mentions "file", a task a text-only model cannot do',
    ],
    [
      { instruction: '"Quote" this sentence back to me.', input: "" },
      "punctuation-start",
      'instruction starts with punctuation """',
    ],
    [
      { instruction: "¿Cómo estás hoy, amigo mío?", input: "" },
      "non-ascii-start",
      'instruction starts with non-ASCII character "¿"',
    ],
  ])("rejects %j with %s", (task, filter, reason) => {
    expect(filterSelfInstructTask(task)).toEqual({ filter, reason });
  });
  it("honours disabled filters and custom bounds", () => {
    expect(filterSelfInstructTask({ instruction: "Write a poem.", input: "" }, { disabled: ["word-count"] })).toBe(
      undefined,
    );
    expect(filterSelfInstructTask(pass, { maxWords: 5 })?.filter).toBe("word-count");
  });
});
