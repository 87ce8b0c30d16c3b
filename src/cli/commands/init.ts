import { cp, mkdir, readdir, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { Command } from "commander";
import { constitutionFiles, defaultConstitutionDir } from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";

/** `selfalign init <dir>`: a starter config and an editable copy of the default constitution. */
export function registerInit(program: Command): void {
  program
    .command("init")
    .description("Create a project folder: selfalign.yaml (a commented starter config) and constitution/ to edit.")
    .argument("<dir>", "folder to create (must be empty or absent unless --force)")
    .option("--force", "write into a non-empty folder, overwriting selfalign.yaml and constitution/ files", false)
    .action(async (dir: string, options: { force: boolean }) => {
      const entries = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return [] as string[];
        if (error.code === "ENOTDIR")
          throw new ConfigError(`${dir} is a file, not a folder; choose a folder name for the new project`, {
            path: dir,
          });
        throw error;
      });
      if (entries.length > 0 && !options.force) {
        throw new ConfigError(
          `${dir} is not empty (${entries.length} entr${entries.length === 1 ? "y" : "ies"}); choose a new folder, or pass --force to write selfalign.yaml and constitution/ into it (overwriting those)`,
          { path: dir },
        );
      }
      const constitutionDir = join(dir, "constitution");
      await mkdir(constitutionDir, { recursive: true });
      const source = defaultConstitutionDir();
      for (const { file } of Object.values(constitutionFiles)) {
        await cp(join(source, file), join(constitutionDir, file), { force: true });
      }
      const configPath = join(dir, "selfalign.yaml");
      await writeFile(configPath, starterConfig(projectName(dir)), "utf8");
      process.stdout.write(
        [
          `created ${configPath}`,
          `created ${constitutionDir}/ (${Object.keys(constitutionFiles).length} files, a copy of the default constitution)`,
          "next: point `model` in selfalign.yaml at your base model, edit the constitution, then check it with",
          `  selfalign constitution check ${constitutionDir}`,
          "",
        ].join("\n"),
      );
    });
}

/** A lower-case, dash-separated name from the folder's name. */
function projectName(dir: string): string {
  const name = basename(resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return name || "my-assistant";
}

/** The starter config: every key commented, counts small enough for a first run on one machine. */
export function starterConfig(name: string): string {
  return `# selfalign project configuration ('selfalign run selfalign.yaml'). Paths are relative to this file.

# Name of the run; its records go to runs/<name>/ (or set runDir).
name: ${name}

# The base model to align (a base model, not a chat-tuned one). One of:
#   ./models/base.gguf                        a local GGUF file, run in-process by llama.cpp (the default engine)
#   hf:<owner>/<repo>/<file>.gguf             a GGUF downloaded once from Hugging Face
#   openai:http://host:8000/v1#<model-name>   an OpenAI-compatible completions server (vLLM, SGLang, llama.cpp server);
#                                             then set trainBase to a GGUF of the same model for the embedded trainer
model: ./models/base.gguf

# The constitution folder: principles, exemplars, red-team types, seed tasks and prompts.
# Check it after editing with: selfalign constitution check ./constitution
constitution: ./constitution

seed: 42

# The embedded engine: context per sequence (the stage-2 meta-prompt needs about 2k tokens) and parallel sequences.
engine:
  contextSize: 8192
  sequences: 4

# How much each stage produces. The paper's figures are far larger (about 267k self-instruct and 99k red-team
# prompts); start small, look at the records ('selfalign report runs/${name}'), then scale up.
stages:
  # Stage 1a: new instructions from the seed tasks.
  self-instruct:
    target: 300
  # Stage 1b: rounds of topic brainstorming per red-team type, then one question per (type, topic).
  red-team:
    epochs: 2
    maxTopicsPerType: 6
  # Stage 2: principle-driven answers to every stage-1 prompt (sampling defaults: T 0.5, top-p 0.9, 256 tokens).
  self-align: {}
  # Stage 3: LoRA on the kept answers, principles and thoughts removed. trainer: embedded (CPU) or hf (GPU).
  engrave:
    train:
      trainer: embedded
      rank: 16
      alpha: 16
      learningRate: 4.0e-4
      cutoffLen: 512
  # Stage 4: verbose answers from the engraved model, then a fresh LoRA on the base model.
  verbose-clone:
    maxPrompts: 300
    train:
      trainer: embedded
      cutoffLen: 768

# Write runs/<name>/report.html at the end.
report: true
`;
}
