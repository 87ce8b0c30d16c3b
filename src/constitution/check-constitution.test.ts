import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { rougeL } from "../text/rouge-l.js";
import { checkConstitution } from "./check-constitution.js";
import { formatConstitutionIssue } from "./constitution-issue.js";
import type { Constitution } from "./constitution-schema.js";
import { defaultConstitutionDir } from "./default-constitution-dir.js";
import { loadConstitution } from "./load-constitution.js";

let base: Constitution;
beforeAll(async () => {
  base = await loadConstitution(defaultConstitutionDir());
});

/** A deep copy of the default constitution to break in one place. */
function copy(): Constitution {
  return structuredClone(base);
}

function messages(constitution: Constitution, severity: "error" | "warning") {
  return checkConstitution(constitution)
    .filter((issue) => issue.severity === severity)
    .map(formatConstitutionIssue);
}

describe("checkConstitution", () => {
  it("finds no problem at all in the default constitution", () => {
    expect(checkConstitution(base)).toEqual([]);
  });

  it("requires the thoughts to name every cited principle's number", () => {
    const broken = copy();
    broken.exemplars[0]?.turns[0]?.cites.push("static");
    expect(messages(broken, "error")).toEqual([
      expect.stringContaining(
        'exemplars.yaml, exemplars[0].turns[0].thoughts: cites "static" but never names its number; write "9 (static)" in the thoughts',
      ),
    ]);
  });

  it("warns when the thoughts name a rule that cites leaves out, or name it wrongly", () => {
    const broken = copy();
    const turn = broken.exemplars[0]?.turns[0];
    if (!turn) throw new Error("default exemplar missing");
    turn.cites = turn.cites.filter((id) => id !== "helpful");
    turn.thoughts = turn.thoughts.replace("4 (question assessment)", "4 (assessment)");
    expect(messages(broken, "error")).toEqual([]);
    expect(messages(broken, "warning")).toEqual([
      expect.stringContaining('the thoughts name rule 3 (helpful); add "helpful" to cites'),
      expect.stringContaining('writes "4 (assessment)" but rule 4 is named "question assessment"'),
    ]);
  });

  it("requires thoughts to start with the assistant's thought opening", () => {
    const broken = copy();
    const turn = broken.exemplars[3]?.turns[1];
    if (!turn) throw new Error("default follow-up turn missing");
    turn.thoughts = turn.thoughts.replace(base.assistant.thoughtOpening, "I think");
    expect(messages(broken, "error")).toEqual([
      expect.stringContaining(`exemplars[3].turns[1].thoughts: must start with the thoughtOpening of assistant.yaml`),
    ]);
  });

  it("reports unknown principle ids and duplicate ids in a constitution built in code", () => {
    const broken = copy();
    broken.exemplars[1]?.turns[0]?.cites.push("candour");
    const first = broken.seedTasks[0];
    if (!first) throw new Error("no seed task");
    broken.seedTasks.push({ ...first, instruction: "Name a river in Africa." });
    const errors = messages(broken, "error");
    expect(errors).toContainEqual(
      expect.stringContaining('exemplars[1].turns[0].cites[3]: unknown principle id "candour"'),
    );
    expect(errors).toContainEqual(
      expect.stringContaining(
        `tasks[${broken.seedTasks.length - 1}].id: duplicate id "${first.id}", already used by tasks[0]`,
      ),
    );
  });

  it("warns about counts and numbering that differ from the method", () => {
    const broken = copy();
    broken.principles = broken.principles.filter((principle) => principle.id !== "balanced-perspectives");
    broken.redTeamTypes.pop();
    broken.redTeamTypes[0] = { ...(broken.redTeamTypes[0] as Constitution["redTeamTypes"][number]), label: "Odd ones" };
    expect(messages(broken, "error")).toEqual([]);
    expect(messages(broken, "warning")).toEqual([
      expect.stringContaining("15 principles; the method uses 16"),
      expect.stringContaining(
        "principle numbers are 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16; number them 1 to 15",
      ),
      expect.stringContaining("19 red-team types; the method uses 20"),
      expect.stringContaining('types[0].label: labels read "Questions that require ..."'),
    ]);
  });

  it("requires both prompts to end with ### User and flags unknown placeholders", () => {
    const broken = copy();
    broken.assistant.concisePrompt = broken.assistant.concisePrompt.replace(/### User\s*$/, "");
    broken.assistant.identity[0] = { user: "Who are you?", answer: "I am {assistantName}." };
    expect(messages(broken, "error")).toEqual([
      expect.stringContaining('concisePrompt: must end with a "### User" line'),
    ]);
    expect(messages(broken, "warning")).toEqual([
      expect.stringContaining(
        "identity[0].answer: unknown placeholder {assistantName}; known: {name}, {developer}, {knowledgeCutoff}",
      ),
    ]);
  });

  it("flags near-duplicate seed tasks with their line, and honours the threshold", async () => {
    const dir = await mkdtemp(join(tmpdir(), "selfalign-check-"));
    try {
      await cp(defaultConstitutionDir(), dir, { recursive: true });
      const path = join(dir, "seed-tasks.yaml");
      const twin = "Suggest three names for a small bakery that specialises in rye bread.";
      const original = base.seedTasks[0]?.instruction ?? "";
      const score = rougeL(twin, original);
      expect(score).toBeGreaterThan(0.7);
      const text = `${await readFile(path, "utf8")}\n  - id: bakery-twin\n    instruction: ${twin}\n`;
      await writeFile(path, text);
      const loaded = await loadConstitution(dir);
      const index = loaded.seedTasks.length - 1;
      const line = text.split("\n").findIndex((l) => l.includes(twin)) + 1;
      expect(checkConstitution(loaded).map(formatConstitutionIssue)).toEqual([
        `${path}, line ${line}, tasks[${index}].instruction: near-duplicate of tasks[0] ("task-001"): ROUGE-L ${score.toFixed(2)} > 0.7; reword one of them or remove it`,
      ]);
      expect(checkConstitution(loaded, { nearDuplicateThreshold: 0.95 })).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
