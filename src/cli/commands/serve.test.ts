import { describe, expect, it } from "vitest";
import { ConfigError } from "../../errors/index.js";
import { defaultModelName, parseLoraFlag } from "./serve.js";

describe("selfalign serve flags", () => {
  it("reads --lora path[:scale], keeping other colons in the path", () => {
    expect(parseLoraFlag("a.gguf")).toEqual([{ path: "a.gguf" }]);
    expect(parseLoraFlag("b.gguf:0.5", [{ path: "a.gguf" }])).toEqual([
      { path: "a.gguf" },
      { path: "b.gguf", scale: 0.5 },
    ]);
    expect(parseLoraFlag("C:/adapters/x.gguf:-1")).toEqual([{ path: "C:/adapters/x.gguf", scale: -1 }]);
    expect(() => parseLoraFlag(":2")).toThrow(ConfigError);
  });

  it("names the model after its file", () => {
    expect(defaultModelName("models/tiny.gguf")).toBe("tiny");
    expect(defaultModelName("hf:owner/repo/Base-7B.Q8_0.gguf")).toBe("Base-7B.Q8_0");
  });
});
