import { describe, expect, it } from "vitest";
import { ConfigError } from "../../errors/index.js";
import { defaultModelName, parseAdapterFlag, parseBodySize, parseLoraFlag } from "./serve.js";

describe("selfalign serve flags", () => {
  it("reads --adapter path[:scale] (and the old --lora), keeping other colons in the path", () => {
    expect(parseAdapterFlag("a.gguf")).toEqual([{ path: "a.gguf" }]);
    expect(parseAdapterFlag("b.gguf:0.5", [{ path: "a.gguf" }])).toEqual([
      { path: "a.gguf" },
      { path: "b.gguf", scale: 0.5 },
    ]);
    expect(parseAdapterFlag("C:/adapters/x.gguf:-1")).toEqual([{ path: "C:/adapters/x.gguf", scale: -1 }]);
    expect(() => parseAdapterFlag(":2")).toThrow(/--adapter expects path\[:scale\]/);
    expect(parseLoraFlag("c.gguf:2")).toEqual([{ path: "c.gguf", scale: 2 }]);
    expect(() => parseLoraFlag(":2")).toThrow(ConfigError);
  });

  it("reads --max-body as bytes or with a k/m suffix", () => {
    expect(parseBodySize("2048")).toBe(2048);
    expect(parseBodySize("512k")).toBe(512 * 1024);
    expect(parseBodySize("4M")).toBe(4 * 1024 * 1024);
    expect(parseBodySize("4MiB")).toBe(4 * 1024 * 1024);
    for (const bad of ["", "0", "-1", "1.5m", "4g", "lots"])
      expect(() => parseBodySize(bad)).toThrow(/--max-body must be a size such as/);
  });

  it("names the model after its file", () => {
    expect(defaultModelName("models/tiny.gguf")).toBe("tiny");
    expect(defaultModelName("hf:owner/repo/Base-7B.Q8_0.gguf")).toBe("Base-7B.Q8_0");
  });
});
