import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { ConstitutionContent } from "./constitution-schema.js";
import { constitutionStats } from "./constitution-stats.js";
import { defaultConstitutionDir } from "./default-constitution-dir.js";
import { loadConstitution } from "./load-constitution.js";

const tiny: ConstitutionContent = {
  principles: [
    { id: "kind", number: 1, name: "kind", text: "{name} should be kind.", negatedText: "{name} should be unkind." },
  ],
  exemplars: [
    {
      id: "one",
      turns: [
        {
          user: "Hi",
          input: "line a\nline b",
          thoughts: "I think. I should follow rule 1 (kind).",
          cites: ["kind"],
          answer: "first\n\n  \nsecond\nthird",
        },
        { user: "More?", thoughts: "I think. Rule 1 (kind).", cites: ["kind"], answer: "Sure." },
      ],
      closing: { user: "Thanks", reply: "Welcome" },
    },
  ],
  redTeamTypes: [{ id: "a", label: "Questions that require a", seedTopic: "A", seedQuestion: "A?" }],
  seedTasks: [
    { id: "t1", instruction: "Do one thing.", isClassification: false },
    { id: "t2", instruction: "Label this.", input: "x\ny", isClassification: true },
    { id: "t3", instruction: "Do another.", input: "z", isClassification: false },
  ],
  assistant: {
    name: "A",
    generationName: "B",
    developer: "us",
    knowledgeCutoff: "2023",
    thoughtOpening: "I think.",
    verbosePrompt: "# {name}\n\n## System Overview\nLong.\n\n### User",
    concisePrompt: "# {name}\n### User",
    identity: [{ user: "Who?", answer: "Me.\nReally." }],
  },
};

describe("constitutionStats", () => {
  it("counts lines of annotation by the documented rule", () => {
    const stats = constitutionStats(tiny);
    expect(stats.seedTasks).toEqual({ total: 3, withInput: 2, withoutInput: 1, classification: 1 });
    expect(stats.exemplarTurns).toBe(2);
    expect(stats.annotationLines).toEqual({
      seedTasks: 3, // one per task, whatever its input's length
      redTeamQuestions: 1,
      principles: 1,
      // turn 1: user 1 + input 2 + thoughts 1 + answer 3 (blank lines skipped); turn 2: 1 + 1 + 1; closing 2
      exemplars: 12,
      prompts: 4 + 2,
      identity: 1 + 2,
      total: 3 + 1 + 1 + 12 + 6 + 3,
      unusedNegatedTexts: 1,
      salmon: { rewardPrinciples: 0, rlPrinciples: 0, interventions: 0, total: 0 },
      allMethods: 26,
    });
  });

  it("counts SALMON's lines: own principles by their texts, reused rules by their negated text only", () => {
    const stats = constitutionStats({
      ...tiny,
      salmon: {
        rewardPrinciples: [
          { id: "brief", dimension: "brief", definition: "Be brief.", negativeDefinition: "Ramble." },
          { id: "kind", dimension: "kind", principle: "kind", definition: "x", negativeDefinition: "y" },
        ],
        rlPrinciples: [
          { id: "kind", principle: "kind", definition: "x", weight: 1, boostFor: [] },
          { id: "plain", definition: "Be plain.", weight: 2, boostFor: [] },
          { id: "exact", definition: "Be exact.", weight: 1, boostFor: ["reasoning"] },
        ],
        promptTypeBoost: 128,
        interventions: ["No self-praise."],
      },
    });
    expect(stats.salmon).toEqual({
      rewardPrinciples: 2,
      rewardPrinciplesReused: 1,
      rlPrinciples: 3,
      rlPrinciplesReused: 1,
      interventions: 1,
    });
    // 2 (own) + 1 (the reused rule's negated text); 2 own RL definitions; 1 intervention.
    expect(stats.annotationLines.salmon).toEqual({ rewardPrinciples: 3, rlPrinciples: 2, interventions: 1, total: 6 });
    expect(stats.annotationLines.unusedNegatedTexts).toBe(0);
    expect(stats.annotationLines.allMethods).toBe(stats.annotationLines.total + 6);
  });

  it("describes the default constitution, which stays under 300 lines of annotation", async () => {
    const dir = defaultConstitutionDir();
    const stats = constitutionStats(await loadConstitution(dir));
    // Independent count straight from the YAML.
    const tasks = parse(await readFile(join(dir, "seed-tasks.yaml"), "utf8")).tasks as Array<Record<string, unknown>>;
    const withInput = tasks.filter((task) => "input" in task).length;
    expect(stats.seedTasks).toEqual({
      total: tasks.length,
      withInput,
      withoutInput: tasks.length - withInput,
      classification: tasks.filter((task) => task.isClassification === true).length,
    });
    expect(stats.principles).toBe(16);
    expect(stats.exemplars).toBe(5);
    expect(stats.redTeamTypes).toBe(20);
    expect(stats.seedTasks.total).toBeGreaterThanOrEqual(150);
    // Roughly a third with input and some classification, as the issue asks.
    expect(stats.seedTasks.withInput / stats.seedTasks.total).toBeGreaterThan(0.25);
    expect(stats.seedTasks.classification / stats.seedTasks.total).toBeGreaterThan(0.1);
    const { total, unusedNegatedTexts, salmon, allMethods, ...counted } = stats.annotationLines;
    expect(total).toBe(Object.values(counted).reduce((sum, n) => sum + n, 0));
    expect(total).toBeLessThan(300);
    // SALMON, counted from salmon.yaml directly: two lines per principle with texts of its own, one (the negated
    // text) per reused rule; one per RL definition written; one per intervention.
    const file = parse(await readFile(join(dir, "salmon.yaml"), "utf8")) as {
      rewardPrinciples: Array<Record<string, unknown>>;
      rlPrinciples: Array<Record<string, unknown>>;
      interventions: string[];
    };
    const reward = file.rewardPrinciples.reduce((sum, p) => sum + ("principle" in p ? 1 : 2), 0);
    const rl = file.rlPrinciples.filter((p) => "definition" in p).length;
    expect(salmon).toEqual({
      rewardPrinciples: reward,
      rlPrinciples: rl,
      interventions: file.interventions.length,
      total: reward + rl + file.interventions.length,
    });
    expect(stats.salmon.rewardPrinciples).toBe(8);
    expect(stats.salmon.rlPrinciples).toBe(14);
    expect(stats.salmon.interventions).toBe(3);
    const reused = new Set(file.rewardPrinciples.flatMap((p) => (p.principle ? [p.principle] : [])));
    expect(unusedNegatedTexts).toBe(16 - reused.size);
    expect(allMethods).toBe(total + salmon.total);
  });
});
