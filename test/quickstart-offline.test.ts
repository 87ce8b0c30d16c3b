/** The README's main command, offline: it gets as far as the model download and then explains what to do. */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const cache = mkdtempSync(join(tmpdir(), "selfalign-cache-"));
afterAll(() => rmSync(cache, { recursive: true, force: true }));

describe("quick start offline", () => {
  it("fails at the download with one clear message naming the config field, and creates no run", () => {
    const runDir = join(process.cwd(), "runs", "quickstart");
    const existed = existsSync(runDir);
    const result = spawnSync(
      process.execPath,
      ["--import", "tsx", "src/cli/cli.ts", "run", "examples/quickstart/selfalign.yaml"],
      {
        encoding: "utf8",
        timeout: 60_000,
        // SELFALIGN_OFFLINE makes this deterministic on machines that do have a network.
        env: { ...process.env, SELFALIGN_OFFLINE: "1", SELFALIGN_CACHE_DIR: cache, CI: "1" },
      },
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /examples\/quickstart\/selfalign\.yaml, line \d+, model: could not download model "hf:/,
    );
    expect(result.stderr).toMatch(/SELFALIGN_OFFLINE/);
    expect(result.stderr).toMatch(/set `model` to its path/);
    // Offline, the demo is what can run now.
    expect(result.stderr).toMatch(/run 'selfalign demo'/);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    if (!existed) expect(existsSync(runDir)).toBe(false);
  });
});
