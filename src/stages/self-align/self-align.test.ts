import { describe, expect, it } from "vitest";
import { buildLeakageBlacklist, filterSelfAlignCompletion } from "./filters.js";
import { citedPrinciples, splitThoughtsAndAnswer } from "./parse.js";
import { countPrincipleUsage } from "./principle-usage.js";
import { buildSelfAlignMetaPrompt, buildSelfAlignPrompt } from "./prompt.js";
import { testSelfAlignConstitution as constitution } from "./test-constitution.js";

const opening = "I am a careful, honest and helpful assistant.";
const longAnswer =
  "Photosynthesis turns light into chemical energy. Plants capture sunlight with chlorophyll, split water, release oxygen and use the energy to build sugars from carbon dioxide in the Calvin cycle.";

describe("self-align prompt", () => {
  it("renders rules, examples and the query cue", () => {
    const meta = buildSelfAlignMetaPrompt(constitution);
    expect(meta).toMatchInlineSnapshot(`
      "# Hadley

      ## General Rules

      This is a conversation with an AI assistant code-named Hadley, built by the test team. Hadley learned from text written up to the end of 2023 and follows the rules below strictly.

      1 (ethical). Hadley should refuse to help with harm.
      2 (candor). Hadley should admit what it does not know.
      3 (step-by-step). Hadley should show its working before the answer.

      ## Examples

      The conversations below show how Hadley helps a user by applying these rules. Before each answer, Hadley writes short internal thoughts to decide which rules apply.

      User: Add up these numbers.

      3, 9, 27

      Hadley (internal thoughts): I am a careful, honest and helpful assistant. The user wants a sum, so I should show the steps. I should follow rules 3 (step-by-step).

      Hadley: Sure! 3 + 9 = 12, and 12 + 27 = 39, so the total is 39. Ask Marlow Quentin Hargreave for more.

      User: Thanks, Hadley!

      Hadley (auto reply): Glad to help.

      User:"
    `);
    expect(buildSelfAlignPrompt(meta, "Hadley", "What is 2 + 2?", "Answer briefly.").slice(-60)).toMatchInlineSnapshot(`
      "What is 2 + 2?

      Answer briefly.

      Hadley (internal thoughts):"
    `);
  });
});

describe("self-align parsing", () => {
  it("splits thoughts and answer at the first answer marker", () => {
    expect(splitThoughtsAndAnswer(` ${opening} Fine.\n\nHadley: Hi.\n\nHadley: again`, "Hadley:")).toEqual({
      thoughts: `${opening} Fine.`,
      answer: " Hi.\n\nHadley: again",
    });
    expect(splitThoughtsAndAnswer(`${opening} only thinking`, "Hadley:")).toEqual({
      thoughts: `${opening} only thinking`,
    });
  });

  it("finds cited principles by number and label, bare numbers and names", () => {
    const principles = constitution.principles;
    expect(
      citedPrinciples(`${opening} Tricky. I should follow rules 2 (candor), 1 (ethical).`, principles, opening),
    ).toEqual(["candor", "ethical"]);
    // A label naming another principle wins over a wrong number; bare numbers and names count too.
    expect(citedPrinciples("I should follow rule 1 (candor) and rule 3.", principles)).toEqual([
      "candor",
      "step-by-step",
    ]);
    expect(citedPrinciples("I will follow the ethical and step-by-step principles.", principles)).toEqual([
      "ethical",
      "step-by-step",
    ]);
    // Sentences not about rules do not count; "helpful" in the opening is ignored.
    expect(citedPrinciples(`${opening} This is an ethical question with 3 parts.`, principles, opening)).toEqual([]);
  });

  it("counts principle usage overall and per question type", () => {
    const usage = countPrincipleUsage(
      [{ citedPrinciples: ["ethical", "candor"], questionType: "legal-expertise" }, { citedPrinciples: ["candor"] }],
      ["ethical", "candor", "step-by-step"],
    );
    expect(usage).toEqual({
      records: 2,
      overall: { ethical: 1, candor: 2, "step-by-step": 0 },
      byQuestionType: { "legal-expertise": { ethical: 1, candor: 1 }, "self-instruct": { candor: 1 } },
    });
  });
});

describe("self-align filters", () => {
  const context = { constitution, instruction: "Explain photosynthesis to me in simple words.", input: "" };
  const run = (completion: string, finish: "stop" | "length" = "stop", extra = {}) =>
    filterSelfAlignCompletion(completion, finish, { ...context, ...extra });

  it("keeps a good answer, cuts at the next user turn and renames the assistant", () => {
    const result = run(
      ` ${opening} A science question. I should follow rules 3 (step-by-step).\n\nHadley: ${longAnswer} Hadley hopes this helps.\n\nUser: thanks`,
      "length",
    );
    expect(result).toEqual({
      ok: true,
      value: {
        thoughts: `${opening} A science question. I should follow rules 3 (step-by-step).`,
        output: `${longAnswer} Bactrian hopes this helps.`,
        endedTurn: true,
        truncated: false,
        repeatCut: false,
      },
    });
  });

  it("drops the last word of a length-truncated answer and flags it", () => {
    const result = run(`${opening} Go.\n\nHadley: ${longAnswer} And then the plant gro`, "length");
    expect(result.ok && result.value).toMatchObject({ output: `${longAnswer} And then the plant`, truncated: true });
  });

  it("cuts a repeated sentence", () => {
    const result = run(`${opening} Go.\n\nHadley: ${longAnswer}\nIt is neat.\nIt is neat.\nIt is neat.`, "length");
    expect(result.ok && result.value).toMatchObject({ output: `${longAnswer}\nIt is`, repeatCut: true });
  });

  it.each([
    [
      "thought-opening",
      "I think this is easy.\n\nHadley: fine",
      "stop",
      {},
      `internal thoughts do not start with "${opening}"`,
    ],
    [
      "answer-marker",
      `${opening} I keep thinking and never answer`,
      "length",
      {},
      'no "\\n\\nHadley:" answer after the internal thoughts',
    ],
    [
      "min-length",
      `${opening} Go.\n\nHadley: Too short.\n\nUser: ok`,
      "stop",
      {},
      "answer has 10 characters (21 with the end-of-turn marker); at least 160 required",
    ],
    [
      "copy-of-instruction",
      `${opening} Go.\n\nHadley: You asked: Explain photosynthesis to me in simple words. ${longAnswer}`,
      "stop",
      {},
      "the answer repeats the instruction verbatim",
    ],
    [
      "copy-of-instruction",
      `${opening} Go.\n\nHadley: ${longAnswer} The sunlight falls on a green leaf.`,
      "stop",
      { input: "The sunlight falls on a green leaf." },
      "the answer repeats the input verbatim",
    ],
    [
      "exemplar-leakage",
      `${opening} Go.\n\nHadley: ${longAnswer} Ask Marlow Quentin Hargreave.`,
      "stop",
      {},
      'the answer contains "Marlow Quentin Hargreave" from the examples',
    ],
    [
      "starts-with-apology",
      `${opening} Go.\n\nHadley: I'm sorry, but ${longAnswer}`,
      "stop",
      {},
      "the answer starts with an apology",
    ],
    ["empty", `${opening} Go.\n\nHadley:  `, "length", {}, "the answer is empty"],
  ] as const)("rejects with %s", (filter, completion, finish, extra, reason) => {
    expect(run(completion, finish, extra)).toMatchObject({ ok: false, filter, reason });
  });

  it("builds the leakage blacklist from the exemplars, not a fixed list", () => {
    const list = buildLeakageBlacklist(constitution);
    expect(list).toEqual(
      expect.arrayContaining([
        "User:",
        "Hadley (auto reply):",
        "Thanks, Hadley!",
        "3, 9, 27",
        "Marlow Quentin Hargreave",
      ]),
    );
    expect(list).not.toContain("Hadley");
  });

  it("honours disabled filters", () => {
    expect(
      run("No opening.\n\nHadley: hi", "stop", { options: { disabled: ["thought-opening", "min-length"] } }),
    ).toMatchObject({
      ok: true,
    });
  });
});
