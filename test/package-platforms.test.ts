/**
 * What `npm install selfalign` pulls in must install on every platform node-llama-cpp supports (Linux x64/arm, macOS,
 * Windows): no direct dependency may be limited to some operating systems or CPUs (npm refuses such a package
 * elsewhere with EBADPLATFORM), and llama.cpp's platform builds stay node-llama-cpp's optional dependencies.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

interface PackageJson {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  overrides?: Record<string, string>;
  os?: string[];
  cpu?: string[];
}

const read = (path: string) => JSON.parse(readFileSync(path, "utf8")) as PackageJson;
const root = read("package.json");

describe("dependencies for every platform", () => {
  it("no direct dependency is limited to some operating systems or CPUs", () => {
    for (const name of Object.keys({ ...root.dependencies, ...root.devDependencies })) {
      const installed = read(join("node_modules", name, "package.json"));
      expect({ name, os: installed.os, cpu: installed.cpu }).toEqual({ name, os: undefined, cpu: undefined });
    }
  });

  it("llama.cpp's builds come from node-llama-cpp's optional dependencies, GPU builds overridden only where named", () => {
    const llama = read(join("node_modules", "node-llama-cpp", "package.json"));
    const builds = Object.keys(llama.optionalDependencies ?? {});
    for (const build of ["linux-x64", "linux-arm64", "mac-arm64-metal", "mac-x64", "win-x64"])
      expect(builds).toContain(`@node-llama-cpp/${build}`);
    // The CPU (and Metal) builds are never replaced; the CUDA and Vulkan ones are, to keep installs small.
    for (const name of Object.keys(root.overrides ?? {}))
      expect(name).toMatch(/^@node-llama-cpp\/.+-(cuda|cuda-ext|vulkan)$/);
    expect(Object.keys(root.dependencies ?? {}).filter((name) => name.startsWith("@node-llama-cpp/"))).toEqual([]);
  });
});
