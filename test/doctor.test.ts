/**
 * `selfalign doctor`: on random-weight models with real tokenizers it reports each stage's longest prompt against the
 * context (and fails self-align on a 2048-token model), the end-of-generation tokens and chat template, and what the
 * embedded trainer can do; an architecture the trainer lacks, a vocabulary-only file and too little memory are
 * failures with reasons; an hf: URI works offline from the cache and fails clearly when it is not there.
 */
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testLlamaCppSource, writeTinyModelWithVocabulary } from "./fixtures/llama-cpp-vocabularies.js";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { type DoctorReport, runDoctor } from "../src/doctor/doctor.js";
import { ConfigError } from "../src/errors/index.js";
import { buildTinyModel, gguf, llamaCppVocabularyPath, writeGguf, writeTinyModel } from "../src/gguf/index.js";

let dir: string;
let constitution: Constitution;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-doctor-"));
  constitution = await loadConstitution(defaultConstitutionDir());
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const check = (report: DoctorReport, area: string) => {
  const found = report.checks.find((c) => c.area === area);
  if (!found) throw new Error(`no check for ${area}: ${JSON.stringify(report.checks)}`);
  return found;
};

describe("selfalign doctor", () => {
  it("measures every stage's longest prompt under the real tokenizer, against the context", async () => {
    const path = join(dir, "llama3-2k.gguf");
    await writeTinyModelWithVocabulary(path, "llama-bpe", { contextLength: 2048 });
    const report = await runDoctor({ model: path, constitution });
    expect(report.architecture).toBe("llama");
    expect(check(report, "model file").status).toBe("ok");
    expect(check(report, "tokenizer")).toMatchObject({ status: "ok" });
    expect(check(report, "tokenizer").message).toMatch(/128256 tokens \(bpe\); BOS "<\|begin_of_text\|>" added/);
    expect(check(report, "tokenizer").message).toMatch(/"<\|end_of_text\|>", "<\|eot_id\|>"/);
    // The stage-2 meta-prompt is about 2000 Llama 3 tokens: with 256 new tokens it needs more than 2048.
    const selfAlign = check(report, "self-align");
    expect(selfAlign.status).toBe("fail");
    const [, promptTokens] = /longest prompt (\d+) tokens/.exec(selfAlign.message) ?? [];
    expect(Number(promptTokens)).toBeGreaterThan(1792);
    expect(selfAlign.message).toMatch(/more than the 2048-token context: raise the context size/);
    expect(check(report, "self-instruct").status).toBe("ok");
    expect(check(report, "engrave")).toMatchObject({ status: "ok" });
    expect(check(report, "chat template").status).toBe("warn");

    // With a 4096-token context every stage fits.
    const roomy = await runDoctor({ model: path, constitution, contextSize: 4096 });
    expect(check(roomy, "self-align").status).toBe("ok");
    expect(check(roomy, "context")).toMatchObject({ status: "warn" });
    expect(check(roomy, "context").message).toMatch(/longer than the 2048 tokens the model was trained on/);
  });

  it("names Qwen2's end-of-generation tokens and chat template, and refuses training on too little memory", async () => {
    const path = join(dir, "qwen2.gguf");
    await writeTinyModelWithVocabulary(path, "qwen2", { architecture: "qwen2", contextLength: 8192 });
    const report = await runDoctor({ model: path, constitution, memoryBytes: 1e6 });
    expect(check(report, "tokenizer").message).toMatch(/no BOS added; generation ends at .*"<\|im_end\|>"/);
    expect(check(report, "chat template")).toMatchObject({ status: "ok" });
    expect(check(report, "chat template").message).toMatch(/ChatML/);
    expect(check(report, "self-align").status).toBe("ok");
    expect(check(report, "engrave")).toMatchObject({ status: "fail" });
    expect(check(report, "engrave").message).toMatch(/more than the 0\.0 GiB of memory: use the hf trainer/);
  });

  it("fails training for an architecture the embedded trainer lacks, and a file without weights", async () => {
    // A GPT-2 layout: llama.cpp knows it, the embedded trainer does not.
    const { metadata, tensors } = buildTinyModel({ seed: 2 });
    const gpt2 = Object.fromEntries(
      Object.entries(metadata).map(([key, value]) => [key.replace(/^llama\./, "gpt2."), value]),
    );
    gpt2["general.architecture"] = gguf.string("gpt2");
    gpt2["gpt2.attention.layer_norm_epsilon"] = gguf.f32(1e-5);
    const path = join(dir, "gpt2.gguf");
    await writeGguf(path, { metadata: gpt2, tensors });
    const report = await runDoctor({ model: path, constitution });
    expect(check(report, "tokenizer").status).not.toBe("fail");
    expect(check(report, "engrave")).toMatchObject({ status: "fail" });
    expect(check(report, "engrave").message).toMatch(/unsupported architecture gpt2; supported: llama/);

    const vocabOnly = await (await testLlamaCppSource()).extract(llamaCppVocabularyPath("gpt-2"));
    const empty = await runDoctor({ model: vocabOnly, constitution });
    expect(check(empty, "model file")).toMatchObject({ status: "fail" });
    expect(check(empty, "model file").message).toMatch(/vocabulary-only file/);
  });

  it("reads an hf: model from the cache offline, and says what to do when it is not there", async () => {
    const cacheDir = join(dir, "cache");
    await mkdir(join(cacheDir, "models"), { recursive: true });
    await writeTinyModel(join(cacheDir, "models", "hf_owner_repo_file.gguf"), { seed: 3, contextLength: 16384 });
    const env = { ...process.env, SELFALIGN_OFFLINE: "1", SELFALIGN_CACHE_DIR: cacheDir, CI: "1" };
    const run = (model: string) =>
      spawnSync(process.execPath, ["--import", "tsx", "src/cli/cli.ts", "doctor", model, "--ctx", "16384"], {
        encoding: "utf8",
        timeout: 120_000,
        env,
      });
    const cached = run("hf:owner/repo/file.gguf");
    expect(cached.stdout).toMatch(/^hf:owner\/repo\/file\.gguf \(.*hf_owner_repo_file\.gguf\)\n/);
    expect(cached.stdout).toMatch(/ok\s+self-align\s+longest prompt/);
    expect(cached.stdout).toMatch(/no failures/);
    expect(cached.status).toBe(0);

    const missing = run("hf:owner/other/file.gguf");
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/is not in the cache .* and this command does not download/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    await expect(
      runDoctor({ model: "hf:owner/other/file.gguf", constitution, cacheDir: join(cacheDir, "models") }),
    ).rejects.toBeInstanceOf(ConfigError);
  });
});
