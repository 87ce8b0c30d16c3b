import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { beforeAll, describe, expect, it } from "vitest";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { readJsonl } from "../../run-store/jsonl.js";
import { openRun } from "../../run-store/run.js";
import { identityRecords, renameAssistant, toAlpaca, toMessages, toSftRecord } from "./build-sft.js";
import { chatPrompt, chatPromptFromMessages, cleanAnswer } from "./prompt.js";
import { storeSftRecords } from "./run.js";

let constitution: Constitution;
beforeAll(async () => {
  constitution = await loadConstitution(defaultConstitutionDir());
});

describe("engraving format", () => {
  it("puts the user's message after the system block and ends at the assistant marker", () => {
    const prompt = chatPrompt(constitution.assistant, "concise", "Name a prime.", "Between 10 and 20");
    const name = constitution.assistant.name;
    expect(prompt.endsWith(`\n### User\nName a prime.\n\nBetween 10 and 20\n\n### ${name}`)).toBe(true);
    expect(prompt).not.toContain("{name}");
    expect(prompt).not.toContain(constitution.assistant.thoughtOpening);
    const verbose = chatPrompt(constitution.assistant, "verbose", "Name a prime.");
    expect(verbose.endsWith(`### User\nName a prime.\n\n### ${name} (extensive)`)).toBe(true);
  });

  it("builds SFT examples without thoughts, renamed, with the end-of-turn marker only when the answer ended", () => {
    const { assistant } = constitution;
    const ended = toSftRecord(
      { id: "r1", instruction: "Say hi", input: "", output: `Hi! I am ${assistant.generationName}.`, ended: true },
      assistant,
    );
    expect(ended.completion).toBe(`\nHi! I am ${assistant.name}.\n\n### User\n`);
    expect(ended.output).not.toContain(assistant.generationName);
    expect(ended.prompt.endsWith(`Say hi\n\n### ${assistant.name}`)).toBe(true);
    const cut = toSftRecord({ id: "r2", instruction: "Say hi", output: "Hi there", ended: false }, assistant);
    expect(cut.completion).toBe("\nHi there");
    expect(cut.id).not.toBe(ended.id);
    expect(toAlpaca(ended)).toEqual({ instruction: "Say hi", input: "", output: `Hi! I am ${assistant.name}.` });
    const { messages } = toMessages(ended, assistant);
    expect(messages.map((m) => m.role)).toEqual(["system", "user", "assistant"]);
    expect(messages[0]!.content).not.toMatch(/### User\s*$/);
  });

  it("renders identity exchanges with the assistant's real name", () => {
    const records = identityRecords(constitution.assistant);
    expect(records).toHaveLength(constitution.assistant.identity.length);
    expect(records.every((r) => !r.output.includes("{name}") && r.completion.endsWith("\n\n### User\n"))).toBe(true);
    expect(records.some((r) => r.output.includes(constitution.assistant.name))).toBe(true);
  });

  it("cleans generated answers at the next user turn and drops dangling markers", () => {
    expect(cleanAnswer("Paris.\n\n### User\nnext")).toBe("Paris.");
    expect(cleanAnswer("Paris.\n\n##")).toBe("Paris.");
    expect(renameAssistant("Hadley here", { ...constitution.assistant, generationName: "Hadley", name: "B" })).toBe(
      "B here",
    );
  });

  it("formats multi-turn history", () => {
    const text = chatPromptFromMessages(constitution.assistant, "concise", [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello!" },
      { role: "user", content: "Bye" },
    ]);
    const name = constitution.assistant.name;
    expect(text.endsWith(`### User\nHi\n\n### ${name}\nHello!\n\n### User\nBye\n\n### ${name}`)).toBe(true);
  });
});

describe("SFT exports", () => {
  it("writes the set as Alpaca and chat JSONL and Parquet with identical rows, and a dataset card", async () => {
    const dir = await mkdtemp(join(tmpdir(), "selfalign-engrave-export-"));
    try {
      const { assistant } = constitution;
      const records = [
        toSftRecord(
          { id: "r1", instruction: "Name a prime.", input: "Between 10 and 20", output: "13.", ended: true },
          assistant,
        ),
        toSftRecord(
          { id: "r2", instruction: "Say hi", output: `Hi, I am ${assistant.generationName}.`, ended: false },
          assistant,
        ),
        ...identityRecords(assistant),
      ];
      const run = await openRun(dir, { create: true });
      const store = await run.stage("engrave");
      const files = await storeSftRecords(store, records, constitution, { command: "selfalign run selfalign.yaml" });
      await run.close();
      const parquetRows = async (path: string) => parquetReadObjects({ file: await asyncBufferFromFile(path) });
      const lines = async (path: string) =>
        (await readFile(path, "utf8"))
          .trimEnd()
          .split("\n")
          .map((line) => JSON.parse(line));
      expect(await parquetRows(files.messagesParquet)).toEqual(await lines(files.messages));
      expect(await parquetRows(files.alpacaParquet)).toEqual(await lines(files.alpaca));
      expect(await parquetRows(files.alpacaParquet)).toEqual(records.map(toAlpaca));
      expect((await parquetRows(files.messagesParquet))[0]).toEqual(toMessages(records[0]!, assistant));
      // The stored records keep their ids and provenance.
      expect((await readJsonl(files.sft)).records.map((record) => record.id)).toEqual(records.map((r) => r.id));

      const card = await readFile(files.card, "utf8");
      expect(card).toMatch(/^---\nconfigs:\n {2}- config_name: messages\n/);
      expect(card).toContain(`| messages | messages.parquet | ${records.length} |`);
      expect(card).toContain(`| alpaca | alpaca.parquet | ${records.length} |`);
      expect(card).toContain(`- constitution hash: \`${constitution.hash}\``);
      expect(card).toContain("- made by: `selfalign run selfalign.yaml`");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
