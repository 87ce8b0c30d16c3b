/** The CLI's start-up: listing the commands must not load the inference engine (node-llama-cpp). */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const cli = join(import.meta.dirname, "cli.ts");

// A module hook that fails any resolution of node-llama-cpp: a command module importing it at the top breaks --help.
const hooks = `export async function resolve(specifier, context, next) {
  if (specifier === "node-llama-cpp") throw new Error("node-llama-cpp was loaded at start-up");
  return next(specifier, context);
}`;
const forbidLlama = `data:text/javascript,${encodeURIComponent(
  `import { register } from "node:module"; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`,
)}`;

it("selfalign --help lists every command without loading node-llama-cpp", async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [
    "--import",
    "tsx",
    "--import",
    forbidLlama,
    cli,
    "--help",
  ]);
  for (const command of [
    "init",
    "run",
    "stage",
    "status",
    "constitution",
    "eval",
    "train",
    "serve",
    "chat",
    "export",
  ]) {
    expect(stdout).toMatch(new RegExp(`^  ${command}\\b`, "m"));
  }
});
