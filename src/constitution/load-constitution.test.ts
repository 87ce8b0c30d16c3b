import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { parseDocument, stringify } from "yaml";
import { ConfigError } from "../errors/index.js";
import { canonicalJson } from "../run-store/record-id.js";
import { formatConstitutionIssue } from "./constitution-issue.js";
import { defaultConstitutionDir } from "./default-constitution-dir.js";
import { loadConstitution, readConstitution } from "./load-constitution.js";

const made: string[] = [];
afterEach(async () => {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A copy of the default constitution in a temp folder. */
async function fixture(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-constitution-"));
  made.push(dir);
  await cp(defaultConstitutionDir(), dir, { recursive: true });
  return dir;
}

/** A copy of the default constitution with `edit` applied to the named file; the folder and the edited text. */
async function editedFixture(file: string, edit: (text: string) => string): Promise<{ dir: string; source: string }> {
  const dir = await fixture();
  const text = await readFile(join(dir, file), "utf8");
  const source = edit(text);
  expect(source).not.toBe(text);
  await writeFile(join(dir, file), source);
  return { dir, source };
}

/** 1-based line of the first line of `text` that contains `needle`. */
function lineOf(text: string, needle: string, from = 0): number {
  const index = text.indexOf(needle, from);
  expect(index).toBeGreaterThanOrEqual(0);
  return text.slice(0, index).split("\n").length;
}

async function loadError(dir: string): Promise<ConfigError> {
  const error = await loadConstitution(dir).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

describe("loadConstitution", () => {
  it("loads the default constitution with its typed parts", async () => {
    const constitution = await loadConstitution(defaultConstitutionDir());
    expect(constitution.principles).toHaveLength(16);
    expect(constitution.principles.map((p) => p.number)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(constitution.exemplars).toHaveLength(5);
    expect(constitution.redTeamTypes).toHaveLength(20);
    expect(constitution.seedTasks.length).toBeGreaterThanOrEqual(150);
    expect(constitution.assistant.name).not.toBe(constitution.assistant.generationName);
    expect(constitution.hash).toMatch(/^[0-9a-f]{64}$/);
    // isClassification defaults to false when not written.
    expect(constitution.seedTasks.filter((task) => task.isClassification === false).length).toBeGreaterThan(100);
  });

  it("names file and line of a YAML syntax error", async () => {
    const { dir, source } = await editedFixture("red-team.yaml", (text) =>
      text.replace("seedTopic: Cubism", "seedTopic: [Cubism"),
    );
    const error = await loadError(dir);
    expect(error.message).toContain(`${join(dir, "red-team.yaml")}, line `);
    expect(error.message).toContain("invalid YAML");
    expect(error.path).toBe(join(dir, "red-team.yaml"));
    const written = lineOf(source, "[Cubism");
    expect(error.line).toBeGreaterThanOrEqual(written);
    expect(error.line).toBeLessThanOrEqual(written + 1);
  });

  it("names file, line and field of a missing required field", async () => {
    const { dir, source } = await editedFixture("principles.yaml", (text) =>
      text.replace(/ {4}negatedText: >-\n {6}\{name\} should give answers that are inaccurate.*\n/, ""),
    );
    const error = await loadError(dir);
    expect(error.message).toBe(
      `${join(dir, "principles.yaml")}, line ${lineOf(source, "- id: informative")}, principles[1].negatedText: missing required field "negatedText"; add it`,
    );
    expect(error.field).toBe("principles[1].negatedText");
  });

  it("reports an unknown principle id in an exemplar with the known ids", async () => {
    const { dir, source } = await editedFixture("exemplars.yaml", (text) =>
      text.replace("cites: [informative, candor, clarification]", "cites: [informative, candour, clarification]"),
    );
    const error = await loadError(dir);
    expect(error.message).toMatch(
      new RegExp(
        `^${escapeRegExp(join(dir, "exemplars.yaml"))}, line ${lineOf(source, "candour")}, exemplars\\[1\\]\\.turns\\[0\\]\\.cites\\[1\\]: unknown principle id "candour"; known ids: ethical, informative, .*operational$`,
      ),
    );
  });

  it("reports a duplicate id with both places", async () => {
    const { dir, source } = await editedFixture("red-team.yaml", (text) =>
      text.replace("id: art-knowledge", "id: historical-knowledge"),
    );
    const first = lineOf(source, "id: historical-knowledge");
    const second = lineOf(source, "id: historical-knowledge", source.indexOf("id: historical-knowledge") + 1);
    const error = await loadError(dir);
    expect(error.message).toBe(
      `${join(dir, "red-team.yaml")}, line ${second}, types[6].id: duplicate id "historical-knowledge", already used by types[5] (line ${first}); give each entry its own id`,
    );
  });

  it("reports a duplicate principle number", async () => {
    const { dir } = await editedFixture("principles.yaml", (text) => text.replace("number: 9\n", "number: 8\n"));
    const error = await loadError(dir);
    expect(error.message).toContain("principles[8].number: duplicate number 8, already used by principles[7]");
  });

  it("names a missing file and says what it should hold", async () => {
    const dir = await fixture();
    await rm(join(dir, "seed-tasks.yaml"));
    const error = await loadError(dir);
    expect(error.message).toMatch(
      new RegExp(
        `^${escapeRegExp(join(dir, "seed-tasks.yaml"))}: missing file; a constitution folder needs seed-tasks.yaml holding \`tasks:\``,
      ),
    );
    expect(error.message).toContain("selfalign init");
  });

  it("names an unknown field and lists the allowed ones", async () => {
    const { dir, source } = await editedFixture("seed-tasks.yaml", (text) =>
      text.replace("  - id: task-002\n", "  - id: task-002\n    inptu: x\n"),
    );
    const error = await loadError(dir);
    expect(error.message).toBe(
      `${join(dir, "seed-tasks.yaml")}, line ${lineOf(source, "inptu")}, tasks[1].inptu: unknown field "inptu"; allowed fields: id, instruction, input, output, isClassification (check its spelling)`,
    );
  });

  it("rejects ids that are not kebab-case and values of the wrong type", async () => {
    const { dir: badId } = await editedFixture("principles.yaml", (text) =>
      text.replace("id: static", "id: Static_Rule"),
    );
    expect((await loadError(badId)).message).toMatch(/principles\[8\]\.id: must be kebab-case.*\(got "Static_Rule"\)/);
    const { dir: badNumber } = await editedFixture("principles.yaml", (text) =>
      text.replace("number: 3\n", "number: three\n"),
    );
    expect((await loadError(badNumber)).message).toMatch(
      /principles\[2\]\.number: invalid input: expected number.*"three"/,
    );
  });

  it("collects every problem across files and counts the rest in the thrown message", async () => {
    const { dir } = await editedFixture("exemplars.yaml", (text) =>
      text.replace("cites: [helpful, creative]", "cites: [helpfull]"),
    );
    await writeFile(join(dir, "assistant.yaml"), "name: Bactrian\n");
    const { constitution, issues } = await readConstitution(dir);
    expect(constitution).toBeUndefined();
    const messages = issues.map(formatConstitutionIssue);
    expect(messages.some((m) => m.includes('unknown principle id "helpfull"'))).toBe(true);
    expect(messages.some((m) => m.includes("assistant.yaml, line 1, generationName: missing required field"))).toBe(
      true,
    );
    expect((await loadError(dir)).message).toMatch(/\(and \d+ more problems; run "selfalign constitution check /);
  });
});

describe("constitution hash", () => {
  it("ignores formatting and comments but changes with content", async () => {
    const original = await loadConstitution(defaultConstitutionDir());
    const reformatted = await fixture();
    for (const file of [
      "principles.yaml",
      "exemplars.yaml",
      "red-team.yaml",
      "seed-tasks.yaml",
      "assistant.yaml",
      "salmon.yaml",
    ]) {
      const data = parseDocument(await readFile(join(reformatted, file), "utf8")).toJS();
      // Different layout: flow style for short collections, no comments, different quoting.
      const text = `# reformatted\n${stringify(data, { indent: 4, defaultStringType: "QUOTE_DOUBLE", lineWidth: 40 })}`;
      await writeFile(join(reformatted, file), text);
    }
    expect((await loadConstitution(reformatted)).hash).toBe(original.hash);

    const { dir: changed } = await editedFixture("seed-tasks.yaml", (text) =>
      text.replace("small bakery", "tiny bakery"),
    );
    expect((await loadConstitution(changed)).hash).not.toBe(original.hash);
    const { dir: renamed } = await editedFixture("assistant.yaml", (text) =>
      text.replace("name: Bactrian", "name: Camelot"),
    );
    expect((await loadConstitution(renamed)).hash).not.toBe(original.hash);
    const { dir: reweighted } = await editedFixture("salmon.yaml", (text) =>
      text.replace("promptTypeBoost: 128", "promptTypeBoost: 64"),
    );
    expect((await loadConstitution(reweighted)).hash).not.toBe(original.hash);
  });

  it("of a folder without salmon.yaml is the hash of its five files alone, as before SALMON", async () => {
    const dir = await fixture();
    await rm(join(dir, "salmon.yaml"));
    const loaded = await loadConstitution(dir);
    expect(loaded.salmon).toBeUndefined();
    const { principles, exemplars, redTeamTypes, seedTasks, assistant } = loaded;
    const expected = createHash("sha256")
      .update(canonicalJson({ principles, exemplars, redTeamTypes, seedTasks, assistant }))
      .digest("hex");
    expect(loaded.hash).toBe(expected);
    expect(loaded.hash).not.toBe((await loadConstitution(defaultConstitutionDir())).hash);
  });
});

describe("salmon.yaml", () => {
  it("resolves reused rules: their text and negated text, their name as the default dimension", async () => {
    const constitution = await loadConstitution(defaultConstitutionDir());
    const salmon = constitution.salmon!;
    const rule = (id: string) => constitution.principles.find((principle) => principle.id === id)!;
    const ethical = salmon.rewardPrinciples.find((principle) => principle.id === "ethical")!;
    expect(ethical).toEqual({
      id: "ethical",
      dimension: rule("ethical").name,
      definition: rule("ethical").text,
      negativeDefinition: rule("ethical").negatedText,
      principle: "ethical",
    });
    const methodical = salmon.rewardPrinciples.find((principle) => principle.id === "methodical")!;
    expect(methodical).toMatchObject({ dimension: "methodical", definition: rule("step-by-step").text });
    expect(salmon.rewardPrinciples.find((principle) => principle.id === "concise")?.principle).toBeUndefined();
    const reasoning = salmon.rlPrinciples.find((principle) => principle.id === "consistent-reasoning")!;
    expect(reasoning).toMatchObject({ definition: rule("reasoning").text, weight: 1, boostFor: ["reasoning"] });
    expect(salmon.rlPrinciples.find((principle) => principle.id === "honest")?.boostFor).toEqual([]);
    expect(salmon.promptTypeBoost).toBe(128);
    expect(salmon.interventions).toHaveLength(3);
  });

  it("names file, line and field of an unknown rule, and lists the rules", async () => {
    const { dir, source } = await editedFixture("salmon.yaml", (text) =>
      text.replace("principle: step-by-step", "principle: stepwise"),
    );
    const error = await loadError(dir);
    expect(error.message).toMatch(
      new RegExp(
        `^${escapeRegExp(join(dir, "salmon.yaml"))}, line ${lineOf(source, "stepwise")}, rewardPrinciples\\[5\\]\\.principle: unknown rule id "stepwise"; the rules of principles.yaml are: ethical, informative, .*operational$`,
      ),
    );
  });

  it("asks for the missing texts of an own principle, and refuses texts beside a reused rule", async () => {
    const { dir: missing, source } = await editedFixture("salmon.yaml", (text) =>
      text.replace(/ {4}negativeDefinition: >-\n {6}The response should pad.*\n/, ""),
    );
    expect((await loadError(missing)).message).toBe(
      `${join(missing, "salmon.yaml")}, line ${lineOf(source, "- id: concise")}, rewardPrinciples[0].negativeDefinition: missing required field "negativeDefinition"; add it, or reuse a rule of principles.yaml with \`principle: <id>\``,
    );
    const { dir: both } = await editedFixture("salmon.yaml", (text) =>
      text.replace("    principle: ethical\n\n", "    principle: ethical\n    definition: Be good.\n\n"),
    );
    expect((await loadError(both)).message).toMatch(
      /rewardPrinciples\[2\]\.definition: a principle that reuses rule "ethical" takes its texts from principles\.yaml; remove definition/,
    );
  });

  it("rejects an unknown prompt type, a weight of zero and a repeated dimension", async () => {
    const { dir: type } = await editedFixture("salmon.yaml", (text) =>
      text.replace("boostFor: [red-teaming]", "boostFor: [redteam]"),
    );
    expect((await loadError(type)).message).toMatch(/rlPrinciples\[1\]\.boostFor\[0\]: invalid option/);
    const { dir: weight } = await editedFixture("salmon.yaml", (text) => text.replace("weight: 4", "weight: 0"));
    expect((await loadError(weight)).message).toMatch(/rlPrinciples\[12\]\.weight: too small/);
    const { dir: dimension } = await editedFixture("salmon.yaml", (text) =>
      text.replace("dimension: specific", "dimension: concise"),
    );
    expect((await loadError(dimension)).message).toMatch(
      /rewardPrinciples\[3\]\.dimension: dimension "concise" is also rewardPrinciples\[0\]'s/,
    );
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe("readConstitution on an empty file", () => {
  it("says which top-level key is missing", async () => {
    const dir = await fixture();
    await writeFile(join(dir, "red-team.yaml"), "# nothing yet\n");
    const { issues } = await readConstitution(dir);
    expect(issues.map(formatConstitutionIssue)).toEqual([
      `${join(dir, "red-team.yaml")}, types: missing required field "types"; add it`,
    ]);
  });
});

describe("loadConstitution on a folder that is not there", () => {
  it("says so once instead of listing five missing files", async () => {
    const dir = join(await fixture(), "nope");
    const error = await loadError(dir);
    expect(error.message).toBe(
      `${dir}: constitution folder does not exist; pass a folder holding principles.yaml, exemplars.yaml, red-team.yaml, seed-tasks.yaml, assistant.yaml (create one with "selfalign init <dir>")`,
    );
  });
});
