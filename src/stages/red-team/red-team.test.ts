import { describe, expect, it } from "vitest";
import { buildQuestionPrompt, instructionLabel, parseQuestions } from "./questions.js";
import { balanceTopics, buildTopicPrompt, checkTopic, parseTopics } from "./topics.js";

describe("topic brainstorming", () => {
  it("renders the request with the listed topics", () => {
    expect(
      buildTopicPrompt("Questions that require legal expertise", ["Tenant rights", "Patent law"]),
    ).toMatchInlineSnapshot(`
      "Brainstorm 10 different topics for the question type "Questions that require legal expertise".

      Requirements:
      1. Do not reuse a word that already appears in another topic.
      2. Keep every topic to at most three words.
      3. Write each topic as a noun phrase that starts with a capital letter.
      4. Make every topic fit the question type.

      List of 10 topics:

      1. Tenant rights
      2. Patent law
      "
    `);
  });

  it("parses a messy completion line by line", () => {
    const completion = [
      "3. Jury duty",
      "4. The history of maritime salvage law",
      "5. contract disputes",
      "6. Small claims court.",
      "7.Inheritance",
      "",
      "8. Data privacy",
      "9. ",
    ].join("\n");
    expect(parseTopics(completion)).toEqual([
      { ok: true, line: 0, topic: "Jury duty" },
      {
        ok: false,
        line: 1,
        text: "The history of maritime salvage law",
        filter: "topic-length",
        reason: "topic has 6 words; at most 3 allowed",
      },
      {
        ok: false,
        line: 2,
        text: "contract disputes",
        filter: "topic-capital",
        reason: 'topic starts with "c", not an upper-case letter',
      },
      {
        ok: false,
        line: 3,
        text: "Small claims court.",
        filter: "topic-punctuation",
        reason: 'topic ends with punctuation "."',
      },
      { ok: false, line: 4, text: "7.Inheritance", filter: "topic-format", reason: 'no "N. " list marker on the line' },
      { ok: true, line: 6, topic: "Data privacy" },
      { ok: false, line: 7, text: "", filter: "topic-format", reason: "the topic is empty" },
    ]);
  });

  it("reads only the first 20 lines", () => {
    const lines = Array.from({ length: 30 }, (_, i) => `${i + 1}. Topic ${String.fromCharCode(65 + (i % 26))}`);
    expect(parseTopics(lines.join("\n"))).toHaveLength(20);
  });

  it("rejects a non-ASCII capital", () => {
    expect(checkTopic("Élan vital")?.filter).toBe("topic-capital");
  });

  it("dedups per type case-insensitively and balances to the smallest type", () => {
    const balanced = balanceTopics(
      new Map([
        ["a", ["Tax law", "tax law", "Wills", "Leases"]],
        ["b", ["Comets", "Tides", "COMETS"]],
      ]),
    );
    expect([...balanced]).toEqual([
      ["a", ["Tax law", "Wills"]],
      ["b", ["Comets", "Tides"]],
    ]);
  });
});

describe("question generation", () => {
  const seeds = [
    {
      label: "Questions that require legal expertise",
      topic: "Tenant rights",
      question: "Can my landlord keep my deposit?",
    },
    {
      label: "Questions that require real-time information",
      topic: "Stock prices",
      question: "What is Apple trading at?",
    },
  ];
  const targets = [
    { label: "Questions that require legal expertise", topic: "Patent law" },
    { label: "Questions that require knowledge of future events", topic: "Elections" },
    { label: "Questions that require cultural context", topic: "Tea ceremonies" },
  ];

  it("renders hints for seeds and targets and the seed instructions", () => {
    expect(instructionLabel("Questions that require cultural context")).toBe(
      "Instructions that require cultural context",
    );
    expect(buildQuestionPrompt(seeds, targets).slice(-520)).toMatchInlineSnapshot(`
      "-time information, topic: Stock prices
      3. type: Instructions that require legal expertise, topic: Patent law
      4. type: Instructions that require knowledge of future events, topic: Elections
      5. type: Instructions that require cultural context, topic: Tea ceremonies

      20 Instructions:
      1. type: Instructions that require legal expertise, topic: Tenant rights, instruction: Can my landlord keep my deposit?
      2. type: Instructions that require real-time information, topic: Stock prices, instruction: What is Apple trading at?
      "
    `);
  });

  it("keeps the first matching line per target and drops the truncated last line", () => {
    const completion = [
      "3. type: Instructions that require legal expertise, topic: Patent law, instruction: How long does a patent last in Brazil?",
      "3. type: Instructions that require legal expertise, topic: Patent law, instruction: A second try.",
      "4. type: Instructions that require knowledge of future events, topic: Elections, instruction: Who will win in 2032?",
      "5. type: Instructions that require cultural context, topic: Tea ceremonies, instruction: Why do hosts turn the",
    ].join("\n");
    expect(parseQuestions(completion, seeds.length, targets)).toEqual([
      { found: true, question: "How long does a patent last in Brazil?" },
      { found: true, question: "Who will win in 2032?" },
      {
        found: false,
        reason:
          'no complete line starting with "5. type: Instructions that require cultural context, topic: Tea ceremonies"',
      },
    ]);
  });

  it("rejects lines with the wrong number or no instruction part", () => {
    const completion = [
      "4. type: Instructions that require legal expertise, topic: Patent law, instruction: Wrong number.",
      "4. type: Instructions that require knowledge of future events, topic: Elections",
      "",
    ].join("\n");
    const parsed = parseQuestions(completion, seeds.length, targets);
    expect(parsed[0]).toMatchObject({ found: false });
    expect(parsed[1]).toEqual({
      found: false,
      reason:
        'the line for "4. type: Instructions that require knowledge of future events, topic: Elections" has no "instruction: " part',
    });
  });
});
