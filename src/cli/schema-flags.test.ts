import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { evalRegistry } from "../eval/registry.js";
import { evalTasks } from "../eval/eval-result.js";
import { addSchemaOptions, flagName, parseSchemaOptions } from "./schema-flags.js";

const schema = z.object({
  model: z.string({ message: "is required" }).meta({ description: "model spec", value: "<spec>" }),
  maxTokens: z.number().int().min(1, "must be at least 1").default(512).describe("new tokens"),
  data: z.array(z.string()).min(1, "needs a file"),
  style: z.enum(["plain", "fancy"]).default("plain").describe("prompt style"),
  verbose: z.boolean().default(false).describe("say more"),
});

function parse(argv: string[]) {
  const command = new Command("t").exitOverride().configureOutput({ writeErr: () => {} });
  addSchemaOptions(command, schema);
  command.parse(argv, { from: "user" });
  return { command, options: () => parseSchemaOptions<z.infer<typeof schema>>(schema, command.opts()) };
}

describe("flags from a zod schema", () => {
  it("names flags in kebab case, applies defaults, collects repeated lists and converts numbers", () => {
    expect(flagName("maxTokens")).toBe("max-tokens");
    const { options } = parse(["--model", "m.gguf", "--data", "a", "--data", "b", "--max-tokens", "16", "--verbose"]);
    expect(options()).toEqual({ model: "m.gguf", maxTokens: 16, data: ["a", "b"], style: "plain", verbose: true });
  });

  it("shows each field's description, placeholder, choices and default in --help", () => {
    const { command } = parse(["--model", "m", "--data", "a"]);
    const help = command.helpInformation();
    expect(help).toMatch(/--model <spec> +model spec\n/);
    expect(help).toMatch(/--max-tokens <n> +new tokens \(default: 512\)/);
    expect(help).toMatch(/--style <style> +prompt style \(choices: "plain", "fancy", default: "plain"\)/);
    expect(help).toMatch(/--data <value>\n/);
    expect(help).not.toContain("default: []");
  });

  it("refuses a bad value with a ConfigError naming the flag", () => {
    expect(() => parse(["--model", "m", "--data", "a", "--max-tokens", "many"])).toThrow(
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
