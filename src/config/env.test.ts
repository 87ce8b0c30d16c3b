import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readEnv, readSecretEnv } from "./env.js";

describe("readEnv", () => {
  it("applies defaults when nothing is set", () => {
    const env = readEnv({ HOME: "/home/someone" });
    expect(env).toEqual({
      ci: false,
      noColor: false,
      cacheDir: join("/home/someone", ".cache", "selfalign"),
      logLevel: "info",
      offline: false,
    });
  });

  it("reads CI, NO_COLOR, SELFALIGN_CACHE_DIR and SELFALIGN_LOG", () => {
    const env = readEnv({ CI: "true", NO_COLOR: "1", SELFALIGN_CACHE_DIR: "/tmp/cache", SELFALIGN_LOG: "DEBUG" });
    expect(env).toEqual({ ci: true, noColor: true, cacheDir: "/tmp/cache", logLevel: "debug", offline: false });
    expect(readEnv({ CI: "false" }).ci).toBe(false);
    expect(readEnv({ CI: "0" }).ci).toBe(false);
    expect(readEnv({ NO_COLOR: "" }).noColor).toBe(false);
  });

  it("reads SELFALIGN_OFFLINE and HF_HUB_OFFLINE", () => {
    expect(readEnv({ SELFALIGN_OFFLINE: "1" }).offline).toBe(true);
    expect(readEnv({ HF_HUB_OFFLINE: "1" }).offline).toBe(true);
    expect(readEnv({ SELFALIGN_OFFLINE: "0" }).offline).toBe(false);
  });

  it("rejects an unknown log level, naming the variable and the choices", () => {
    expect(() => readEnv({ SELFALIGN_LOG: "loud" })).toThrow(
      /SELFALIGN_LOG must be one of silent, warn, info, debug, got "loud"/,
    );
  });
});

describe("readSecretEnv", () => {
  it("returns the value, or undefined when unset", () => {
    expect(readSecretEnv("API_KEY", {}, { API_KEY: " sk-123 " })).toBe("sk-123");
    expect(readSecretEnv("API_KEY", {}, {})).toBeUndefined();
  });

  it("names the variable but never the value of any secret in its error", () => {
    const env = { OTHER_KEY: "sk-secret-value" };
    let message = "";
    try {
      readSecretEnv("OPENAI_API_KEY", { required: true, purpose: "the openai-compatible backend" }, env);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("OPENAI_API_KEY is not set (needed by the openai-compatible backend)");
    expect(message).not.toContain("sk-secret-value");
  });
});
