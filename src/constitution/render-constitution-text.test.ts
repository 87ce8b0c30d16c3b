import { describe, expect, it } from "vitest";
import { defaultConstitutionDir } from "./default-constitution-dir.js";
import { loadConstitution } from "./load-constitution.js";
import { constitutionTextValues, renderConstitutionText } from "./render-constitution-text.js";

describe("renderConstitutionText", () => {
  it("names the assistant generationName in stage 2 and name everywhere else", async () => {
    const { assistant, principles } = await loadConstitution(defaultConstitutionDir());
    const rule = principles.find((principle) => principle.id === "dated-knowledge")?.text ?? "";
    const generation = renderConstitutionText(rule, constitutionTextValues(assistant, "generation"));
    const inference = renderConstitutionText(rule, constitutionTextValues(assistant));
    expect(generation.startsWith(`${assistant.generationName}'s knowledge ends at ${assistant.knowledgeCutoff}`)).toBe(
      true,
    );
    expect(inference.startsWith(`${assistant.name}'s knowledge ends at ${assistant.knowledgeCutoff}`)).toBe(true);
    const prompt = renderConstitutionText(assistant.concisePrompt, constitutionTextValues(assistant));
    expect(prompt.split("\n")[0]).toBe(`# ${assistant.name}`);
    expect(prompt).toContain(`developed by ${assistant.developer}.`);
    expect(prompt).not.toMatch(/\{(name|developer|knowledgeCutoff)\}/);
  });

  it("leaves other braces as written", () => {
    const values = { name: "Ada", developer: "us", knowledgeCutoff: "2020" };
    expect(renderConstitutionText("{name} wrote {x} and {name}{developer}", values)).toBe("Ada wrote {x} and Adaus");
  });
});
