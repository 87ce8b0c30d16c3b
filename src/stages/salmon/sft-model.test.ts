import { describe, expect, it } from "vitest";
import type { LanguageModel } from "../../backends/language-model.js";
import type { ModelSpec } from "../../backends/model-spec.js";
import { ConfigError } from "../../errors/index.js";
import { sftModel } from "./sft-model.js";

/** A stage context that records which model it was asked for (the wiring under test; no engine is loaded). */
function contextWith(adapters: Record<string, string>, trainBase?: string) {
  const asked: Array<{ spec: ModelSpec; lora?: string[] }> = [];
  const context = {
    definition: { name: "salmon-responses" } as never,
    runDir: "/runs/r",
    ...(trainBase ? { trainBase } : {}),
    adapterOf: async (stage: string) => adapters[stage],
    languageModel: async (spec: ModelSpec, options: { lora?: string[] } = {}) => {
      asked.push({ spec, ...(options.lora ? { lora: options.lora } : {}) });
      return { id: "model" } as LanguageModel;
    },
  };
  return { context, asked };
}

describe("sftModel", () => {
  it("is the named model when the stage names one", async () => {
    const { context, asked } = contextWith({ "verbose-clone": "/v.gguf" }, "/base.gguf");
    await sftModel(context, "openai:http://host:8000/v1#sft", "policy");
    expect(asked).toEqual([{ spec: "openai:http://host:8000/v1#sft" }]);
  });

  it("is the training base with the verbose-clone adapter, else the engrave adapter", async () => {
    const both = contextWith({ "verbose-clone": "/v.gguf", engrave: "/e.gguf" }, "/base.gguf");
    await sftModel(both.context, undefined, "policy");
    expect(both.asked).toEqual([{ spec: "/base.gguf", lora: ["/v.gguf"] }]);
    const engraved = contextWith({ engrave: "/e.gguf" }, "/base.gguf");
    await sftModel(engraved.context, undefined, "judge");
    expect(engraved.asked).toEqual([{ spec: "/base.gguf", lora: ["/e.gguf"] }]);
  });

  it("says what to run or set when there is no adapter or no training base", async () => {
    const none = contextWith({}, "/base.gguf");
    const error = await sftModel(none.context, undefined, "policy").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/neither stage has trained an adapter in \/runs\/r/);
    expect((error as ConfigError).field).toBe("stages.salmon-responses.policy");
    const noBase = contextWith({ engrave: "/e.gguf" });
    await expect(sftModel(noBase.context, undefined, "policy")).rejects.toThrow(/no training base is known/);
  });
});
