import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { evalTasks } from "../eval/eval-result.js";
import { evalRegistry } from "../eval/registry.js";
import { evalOptions } from "./commands/eval.js";
import { addSchemaFlags, schemaFlags } from "./zod-flags.js";

const schema = z.object({
  model: z.string({ message: "is required" }).meta({ description: "model spec", placeholder: "<spec>" }),
  maxTokens: z.number().int().min(1, "must be at least 1").default(512).describe("new tokens"),
  data: z.array(z.string(), { message: "needs a file" }).min(1, "needs a file").meta({ repeatable: true }),
  stop: z.array(z.string()).optional().describe("stop strings (JSON array)"),
  style: z.enum(["plain", "fancy"]).default("plain").describe("prompt style"),
});

function parse(argv: string[]) {
  const command = new Command("t").exitOverride().configureOutput({ writeErr: () => {} });
  const flags = schemaFlags(schema);
  addSchemaFlags(command, flags);
  command.parse(argv, { from: "user" });
  return { command, options: () => evalOptions(schema, flags, command.opts()) };
}

describe("flags from a zod schema (as selfalign eval uses them)", () => {
  it("collects a repeatable list, reads a plain list as JSON, applies defaults and converts numbers", () => {
    const { options } = parse([
      "--model",
      "m.gguf",
      "--data",
      "a",
      "--data",
      "b",
      "--stop",
      '["###"]',
      "--max-tokens",
      "16",
    ]);
    expect(options()).toEqual({ model: "m.gguf", maxTokens: 16, data: ["a", "b"], stop: ["###"], style: "plain" });
  });

  it("shows placeholders, repeatable lists, choices and defaults in --help", () => {
    const help = parse(["--model", "m", "--data", "a"]).command.helpInformation();
    expect(help).toMatch(/--model <spec> +model spec\n/);
    expect(help).toMatch(/--max-tokens <value> +new tokens \(default 512\)/);
    expect(help).toMatch(/--data <value> +data \(repeatable\)\n/);
    expect(help).toMatch(/--style <value> +prompt style \(plain, fancy\) \(default "plain"\)/);
  });

  it("refuses a bad value with a ConfigError naming the flag, with the schema's own message", () => {
    expect(() => parse(["--model", "m", "--data", "a", "--max-tokens", "many"]).options()).toThrow(
      /--max-tokens expects a number, got "many"/,
    );
    const noData = parse(["--model", "m"]).options;
    expect(noData).toThrow(ConfigError);
    expect(noData).toThrow("--data: needs a file");
    expect(parse(["--data", "a"]).options).toThrow("--model: is required");
    expect(parse(["--model", "m", "--data", "a", "--max-tokens", "0"]).options).toThrow(
      "--max-tokens: must be at least 1",
    );
  });
});

describe("the eval registry", () => {
  it("defines every eval task once, and compare", () => {
    const names = evalRegistry.map((definition) => definition.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual([...evalTasks, "compare"]);
  });
});
