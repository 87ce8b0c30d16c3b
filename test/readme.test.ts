/**
 * The README describes what exists: every link stays inside the repository and points at a file that is there, and
 * every `selfalign ...` command it shows is a command of the CLI, with options the CLI has.
 */
import { existsSync, readFileSync } from "node:fs";
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { commands } from "../src/cli/commands/index.js";

const readme = readFileSync("README.md", "utf8");

function program(): Command {
  const root = new Command("selfalign");
  for (const register of commands) register(root);
  return root;
}

describe("README", () => {
  it("links only to files in the repository, which exist", () => {
    const links = [...readme.matchAll(/\]\(([^)]+)\)/g)].map((match) => match[1]!);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) {
      expect(link).not.toMatch(/^[a-z]+:/i);
      expect(link.startsWith("../") || link.startsWith("/")).toBe(false);
      expect(existsSync(link.split("#")[0]!), link).toBe(true);
    }
    // Paths in code spans may not leave the repository either.
    expect(readme).not.toMatch(/`\.\.\//);
    expect(readme).not.toMatch(/https?:\/\/(?!host|127\.0\.0\.1|a\/|b\/)/);
  });

  it("shows only commands and options the CLI has", () => {
    const root = program();
    const spans = [...readme.matchAll(/`(?:npm run |npx )?selfalign (?:-- )?([^`]+)`/g)].map((match) => match[1]!);
    expect(spans.length).toBeGreaterThan(10);
    for (const span of spans) {
      const words = span.split(/\s+/);
      if (words[0]!.startsWith("<")) continue; // `selfalign <command>`
      let command = root.commands.find((candidate) => candidate.name() === words[0]);
      expect(command, `selfalign ${span}`).toBeDefined();
      const sub = command!.commands.find((candidate) => candidate.name() === words[1]);
      if (command!.commands.length > 0 && !words[1]!.startsWith("<")) {
        expect(sub, `selfalign ${span}`).toBeDefined();
        command = sub;
      }
      // eval <task>: the options of any task (they share them).
      const owner = command!.commands.length > 0 ? command!.commands[0]! : command!;
      for (const flag of (span.match(/--[a-z][a-z-]*/g) ?? []).filter((one) => one !== "--help"))
        expect(
          owner.options.map((option) => option.long),
          `selfalign ${span}`,
        ).toContain(flag);
    }
  });
});
