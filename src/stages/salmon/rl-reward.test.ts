import { describe, expect, it } from "vitest";
import { defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { rlGuidelines } from "./reviewer-prompt.js";
import { drawRlPrinciples, rlReviewerText, rlRewardOptionsSchema, rlRewardSeed, symbolicReward } from "./rl-reward.js";

const defaults = rlRewardOptionsSchema.parse({});

describe("symbolicReward (B.5's shaping)", () => {
  it("has the spec's values: -6 without a stop, 5 x length / 1024 x the prompt type's multiplier, clamped at 0.8", () => {
    expect(defaults).toMatchObject({
      principles: 3,
      stopPenalty: -6,
      lengthBonus: 5,
      lengthScale: 1024,
      lengthLimit: 0.8,
    });
    expect(symbolicReward({ tokens: 512, stopped: true }, defaults)).toEqual({ stopPenalty: 0, lengthBonus: 2.5 });
    expect(symbolicReward({ tokens: 4096, stopped: false }, defaults)).toEqual({ stopPenalty: -6, lengthBonus: 4 });
    const reasoning = (tokens: number) => symbolicReward({ tokens, stopped: true, promptType: "reasoning" }, defaults);
    expect(reasoning(1024).lengthBonus).toBeCloseTo(-2, 12);
    // The reference clamps from above only (-0.4 x 4 = -1.6 -> -8 here); the clamp is symmetric: at most -4.
    expect(reasoning(4096).lengthBonus).toBeCloseTo(-4, 12);
    expect(symbolicReward({ tokens: 900, stopped: true, promptType: "red-teaming" }, defaults).lengthBonus).toBe(0);
    const off = rlRewardOptionsSchema.parse({ stopPenalty: 0, lengthBonus: 0 });
    expect(symbolicReward({ tokens: 900, stopped: false }, off)).toEqual({ stopPenalty: 0, lengthBonus: 0 });
  });
});

describe("the reviewer prompt during RL", async () => {
  const constitution = await loadConstitution(defaultConstitutionDir());
  const item = { instruction: "What is 12 x 7?", response: "\n84.\n\n### User\n", promptType: "reasoning" as const };

  it("draws the same principles for the same request, and lists the interventions before them", () => {
    const once = rlReviewerText(constitution, item, defaults);
    expect(rlReviewerText(constitution, item, defaults)).toEqual(once);
    expect(once.principles).toHaveLength(3);
    expect(new Set(once.principles).size).toBe(3);
    expect(once.reviewed).toBe("84.");
    const drawn = drawRlPrinciples(constitution, item, defaults);
    expect(drawn.map((p) => p.id)).toEqual(once.principles);
    const guidelines = rlGuidelines(constitution, drawn);
    const interventions = constitution.salmon!.interventions.length;
    let at = -1;
    for (const line of guidelines) {
      const next = once.text.indexOf(`- ${line}`);
      expect(next).toBeGreaterThan(at);
      at = next;
    }
    expect(guidelines).toHaveLength(interventions + 3);
    expect(rlRewardSeed(1, item)).not.toBe(rlRewardSeed(0, item));
  });

  it("weights the draw: on reasoning prompts the boosted principles are nearly always among the three", () => {
    let boosted = 0;
    const draws = 200;
    for (let i = 0; i < draws; i++) {
      const drawn = drawRlPrinciples(constitution, { ...item, response: `answer ${i}` }, defaults);
      boosted += drawn.filter((p) => p.boostFor.includes("reasoning")).length;
    }
    // Two principles carry +128 on reasoning prompts against a total of 28 for the rest.
    expect(boosted / draws).toBeGreaterThan(1.8);
    let general = 0;
    for (let i = 0; i < draws; i++) {
      const drawn = drawRlPrinciples(constitution, { ...item, promptType: "general", response: `a ${i}` }, defaults);
      general += drawn.filter((p) => p.boostFor.includes("reasoning")).length;
    }
    expect(general / draws).toBeLessThan(0.6);
  });
});
