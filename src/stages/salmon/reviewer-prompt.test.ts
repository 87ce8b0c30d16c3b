import { describe, expect, it } from "vitest";
import { defaultConstitutionDir, loadConstitution, type Salmon } from "../../constitution/index.js";
import { mulberry32 } from "../../random/mulberry32.js";
import {
  REVIEWER_CUE,
  reviewedText,
  reviewerPrompt,
  reviewerPromptHead,
  reviewerPromptTail,
  rewardGuidelines,
  rlGuidelines,
  sampleRlPrinciples,
  salmonOf,
} from "./reviewer-prompt.js";

const constitution = await loadConstitution(defaultConstitutionDir());

describe("reviewerPrompt", () => {
  it("puts the answer first, then the request, the guideline and the cue", () => {
    const text = reviewerPrompt({
      assistantName: "Bactrian",
      instruction: "Name a prime.",
      input: "Below ten.",
      response: " Seven is prime. ",
      guidelines: ["The response should be brief.", "Bactrian should show its steps."],
    });
    expect(text).toMatchInlineSnapshot(`
      "# Review

      You review the answers that Bactrian, an AI assistant, gives to people's requests, and judge how good each answer is.

      ## The answer under review

      ### Bactrian's answer
      Seven is prime.

      ### The request it answers
      Name a prime.

      Below ten.

      ## How to judge it

      Judge the answer by these principles:
      - The response should be brief.
      - Bactrian should show its steps.

      A good answer follows every one of them.

      ## Verdict
      The quality of this answer is"
    `);
    expect(text.endsWith(REVIEWER_CUE)).toBe(true);
    // Head + tail is the prompt: the trainer's prompt / chosen split.
    expect(
      reviewerPromptHead("Bactrian") +
        reviewerPromptTail({
          instruction: "Name a prime.",
          input: "Below ten.",
          response: "Seven is prime.",
          guidelines: ["The response should be brief.", "Bactrian should show its steps."],
        }),
    ).toBe(text);
    expect(() => reviewerPromptTail({ instruction: "x", response: "y", guidelines: [] })).toThrow(/at least one/);
  });

  it("lists an example's reward principles, negative definitions where negated, placeholders filled", () => {
    const salmon = salmonOf(constitution);
    const concise = salmon.rewardPrinciples.find((p) => p.id === "concise")!;
    const ethical = salmon.rewardPrinciples.find((p) => p.id === "ethical")!;
    const lines = rewardGuidelines(constitution, ["ethical", "concise"], [true, false]);
    expect(lines[0]).toBe(ethical.negativeDefinition.replaceAll("{name}", constitution.assistant.name));
    expect(lines[0]).not.toContain("{name}");
    expect(lines[1]).toBe(concise.definition);
    expect(() => rewardGuidelines(constitution, ["nope"], [false])).toThrow(
      /reward principle "nope" is not in salmon.yaml/,
    );
    expect(() => salmonOf({ ...constitution, salmon: undefined })).toThrow(/has no salmon.yaml/);
  });

  it("lists the interventions first during RL", () => {
    const salmon = salmonOf(constitution);
    const picked = salmon.rlPrinciples.slice(0, 2);
    const lines = rlGuidelines(constitution, picked);
    expect(lines.slice(0, 3)).toEqual(salmon.interventions.map((text) => text.trim()));
    expect(lines).toHaveLength(5);
  });

  it("cuts an answer at the first turn or sequence marker", () => {
    expect(reviewedText(" Paris.\n\n### User\nmore")).toBe("Paris.");
    expect(reviewedText("A</s>B")).toBe("A");
    expect(reviewedText("A <s> B ### C")).toBe("A");
    expect(reviewedText("plain")).toBe("plain");
  });
});

describe("sampleRlPrinciples", () => {
  const salmon: Salmon = {
    rewardPrinciples: [],
    rlPrinciples: [
      { id: "a", definition: "A", weight: 3, boostFor: [] },
      { id: "b", definition: "B", weight: 2, boostFor: [] },
      { id: "c", definition: "C", weight: 1, boostFor: ["reasoning"] },
    ],
    promptTypeBoost: 6,
    interventions: [],
  };

  /** Exact probability of an ordered draw without replacement, by the chain rule. */
  const exact = (weights: Record<string, number>, order: string[]) => {
    let left = Object.values(weights).reduce((sum, w) => sum + w, 0);
    let p = 1;
    for (const id of order) {
      p *= weights[id]! / left;
      left -= weights[id]!;
    }
    return p;
  };

  it("draws ordered pairs with the chain-rule probabilities of weighted draws without replacement", () => {
    for (const [type, weights] of [
      ["general", { a: 3, b: 2, c: 1 }],
      ["reasoning", { a: 3, b: 2, c: 7 }],
    ] as const) {
      const random = mulberry32(11);
      const counts = new Map<string, number>();
      const n = 30_000;
      for (let i = 0; i < n; i++) {
        const drawn = sampleRlPrinciples(salmon, type, random, 2).map((p) => p.id);
        expect(new Set(drawn).size).toBe(2);
        counts.set(drawn.join(""), (counts.get(drawn.join("")) ?? 0) + 1);
      }
      for (const order of ["ab", "ac", "ba", "bc", "ca", "cb"]) {
        const p = exact(weights, [...order]);
        const observed = (counts.get(order) ?? 0) / n;
        // Five standard errors of a binomial proportion.
        expect(Math.abs(observed - p)).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / n));
      }
    }
  });

  it("draws every principle once when asked for more than there are", () => {
    const drawn = sampleRlPrinciples(salmon, "general", mulberry32(1), 10).map((p) => p.id);
    expect([...drawn].sort()).toEqual(["a", "b", "c"]);
  });
});
