/**
 * `selfalign chat` on a tiny GGUF: the answer it prints (streamed as it is written) is the engraved-format completion
 * the embedded backend gives for the same conversation, with control characters made harmless; /help lists the
 * commands and /reset starts the conversation again.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { completeAll } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { terminalSafe } from "../src/cli/terminal-text.js";
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

/** The answers the embedded backend gives to `lines` as one conversation, greedy, as `chat` prompts them. */
async function referenceAnswers(lines: string[]): Promise<string[]> {
  const constitution = await loadConstitution(defaultConstitutionDir());
  const backend = await createLlamaCppBackend({ model: modelPath, sequences: 1, threads: 1 });
  const answers: string[] = [];
  const history: Array<{ role: "user" | "assistant"; content: string }> = [];
  try {
    for (const line of lines) {
      history.push({ role: "user", content: line });
      const prompt = `${chatPromptFromMessages(constitution.assistant, "concise", history)}\n`;
      const [result] = await completeAll(backend, [
        { prompt, temperature: 0, maxTokens: 16, stop: [USER_TURN_MARKER] },
      ]);
      const answer = cleanAnswer(result?.completions[0]?.text ?? "");
      answers.push(answer);
      history.push({ role: "assistant", content: answer });
    }
  } finally {
    await backend.close();
  }
  return answers;
}

async function chat(input: string): Promise<string> {
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
  child.stdin.end(input);
  expect(await exited, stderr).toBe(0);
  return stdout;
}

/** Characters a terminal acts on (escape sequences, carriage return, bell, C1 controls, bidi overrides). */
const controls = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/;

it("prints the assistant's answers, streamed, without control characters, and leaves on /exit", async () => {
  const expected = await referenceAnswers(["Hello there", "And again"]);
  expect(expected.some((answer) => answer.length > 0)).toBe(true);
  // This random-weight model writes control bytes: what it wrote must not reach the terminal as written.
  expect(expected.some((answer) => controls.test(answer))).toBe(true);
  const stdout = await chat("Hello there\nAnd again\n/exit\n");
  const name = (await loadConstitution(defaultConstitutionDir())).assistant.name;
  for (const answer of expected) expect(stdout).toContain(`${name}> ${terminalSafe(answer)}\n`);
  expect(stdout).not.toMatch(controls);
});

it("/help lists the commands and /reset starts the conversation again", async () => {
  const [first, second] = await referenceAnswers(["Hello there", "Hello there"]);
  // Asked twice in one conversation the answer differs; after /reset it is the first answer again.
  expect(second).not.toBe(first);
  const stdout = await chat("/help\nHello there\n/reset\nHello there\n/nope\n/exit\n");
  expect(stdout).toMatch(/\/help +this list/);
  expect(stdout).toMatch(/\/reset +forget the conversation/);
  expect(stdout).toMatch(/\/exit +leave/);
  expect(stdout).toContain("(conversation reset)");
  expect(stdout).toContain("unknown command /nope; /help lists the commands");
  const safe = terminalSafe(first!);
  expect(stdout.split(`> ${safe}\n`).length - 1).toBe(2);
  expect(stdout).not.toContain(terminalSafe(second!));
});
