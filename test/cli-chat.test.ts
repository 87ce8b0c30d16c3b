/**
 * `selfalign chat` on a tiny GGUF: the answer it prints (streamed as it is written) is the engraved-format completion
 * the embedded backend gives for the same conversation.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { chatPromptFromMessages, cleanAnswer, USER_TURN_MARKER } from "../src/stages/engrave/prompt.js";

let dir: string;
let modelPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-chat-"));
  modelPath = join(dir, "tiny.gguf");
  await writeTinyModel(modelPath, { seed: 5 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it("prints the assistant's answers, streamed, and leaves on /exit", async () => {
  const constitution = await loadConstitution(defaultConstitutionDir());
  const backend = await createLlamaCppBackend({ model: modelPath, sequences: 1, threads: 1 });
  const expected: string[] = [];
  const history: Array<{ role: "user" | "assistant"; content: string }> = [];
  try {
    for (const line of ["Hello there", "And again"]) {
      history.push({ role: "user", content: line });
      const prompt = `${chatPromptFromMessages(constitution.assistant, "concise", history)}\n`;
      const [result] = await completeAll(backend, [
        { prompt, temperature: 0, maxTokens: 16, stop: [USER_TURN_MARKER] },
      ]);
      const answer = cleanAnswer(result?.completions[0]?.text ?? "");
      expected.push(answer);
      history.push({ role: "assistant", content: answer });
    }
  } finally {
    await backend.close();
  }
  expect(expected.some((answer) => answer.length > 0)).toBe(true);

  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli/cli.ts", "chat", "--model", modelPath, "--temperature", "0", "--max-tokens", "16"],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  child.stdin.end("Hello there\nAnd again\n/exit\n");
  expect(await exited, stderr).toBe(0);
  const name = constitution.assistant.name;
  for (const answer of expected) expect(stdout).toContain(`${name}> ${answer}\n`);
});
