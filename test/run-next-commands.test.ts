/**
 * After `selfalign demo` (the same code path as `selfalign run`), the CLI prints ready-to-paste `chat`, `serve` and
 * `report` commands. Pasted into a shell as printed, each one works.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let dir: string;
let next: string[] = [];

function shell(line: string, input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn("sh", ["-c", line], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin.end(input);
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-next-"));
  const demo = await shell(`node --import tsx src/cli/cli.ts demo --dir ${dir}`);
  expect(demo.code, demo.stderr).toBe(0);
  const printed = demo.stdout.slice(demo.stdout.indexOf("Next:\n") + "Next:\n".length);
  next = printed
    .split("\n")
    .filter((line) => line.startsWith("  "))
    .map((line) => line.trim());
}, 600_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the commands printed after a run", () => {
  it("are chat, serve and report, in the way the CLI was started, naming the final adapter", () => {
    expect(next.map((line) => line.split(" ").slice(4, 5)[0])).toEqual(["chat", "serve", "report"]);
    for (const line of next) expect(line.startsWith("node --import tsx src/cli/cli.ts ")).toBe(true);
    expect(next[0]).toContain(`--model ${join(dir, "tiny-demo.gguf")}`);
    expect(next[0]).toContain(`--adapter ${join(dir, "run", "verbose-clone", "adapter", "adapter.gguf")}`);
  });

  it("chat, pasted as printed, talks to the adapter", async () => {
    const result = await shell(next[0]!, "hello\n/exit\n");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("Chatting with");
    expect(result.stdout).toContain("verbose-clone/adapter/adapter.gguf");
  });

  it("serve, pasted as printed (plus a free port), answers", async () => {
    const child = spawn("sh", ["-c", `exec ${next[1]} --port 0`], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          const match = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(stdout);
          if (match) resolve(match[1]!);
        });
        child.on("exit", (code) => reject(new Error(`serve exited early (${code}): ${stderr}`)));
      });
      const models = (await (await fetch(`${url}/models`)).json()) as { data: Array<{ id: string }> };
      expect(models.data[0]!.id).toBe("tiny-demo");
    } finally {
      child.kill("SIGINT");
      expect(await exited).toBe(0);
    }
  });

  it("report, pasted as printed, writes the report again", async () => {
    const report = join(dir, "run", "report.html");
    const before = (await stat(report)).mtimeMs;
    const result = await shell(next[2]!);
    expect(result.code, result.stderr).toBe(0);
    expect((await stat(report)).mtimeMs).toBeGreaterThan(before);
  });
});
