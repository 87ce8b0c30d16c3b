import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../../package-root.js";

// scripts/build-native.mjs must never fail the build: a machine without OpenBLAS or a compiler still builds,
// and the trainer falls back to WebAssembly.
describe("scripts/build-native.mjs", () => {
  const root = packageRoot();
  const work = mkdtempSync(join(tmpdir(), "selfalign-native-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("reports a failed compile and still exits 0", () => {
    mkdirSync(join(work, "scripts"));
    cpSync(join(root, "scripts", "build-native.mjs"), join(work, "scripts", "build-native.mjs"));
    symlinkSync(join(root, "node_modules"), join(work, "node_modules"));
    mkdirSync(join(work, "native"));
    cpSync(join(root, "native", "binding.gyp"), join(work, "native", "binding.gyp"));
    writeFileSync(join(work, "native", "blas.c"), "this is not C;\n");
    const result = spawnSync(process.execPath, ["scripts/build-native.mjs"], { cwd: work, encoding: "utf8" });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/did not build .*using WebAssembly/);
  });

  it("can be skipped with SELFALIGN_SKIP_NATIVE=1", () => {
    const result = spawnSync(process.execPath, ["scripts/build-native.mjs"], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, SELFALIGN_SKIP_NATIVE: "1" },
    });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/skipped/);
  });
});
