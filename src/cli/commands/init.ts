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
  return `# selfalign project configuration. Paths are relative to this file.

# Name of the run; its records go to runs/<name>/.
name: ${name}

# The base model to align. One of:
#   llama-cpp:./models/base.gguf             a local GGUF file, run in-process (the default engine)
#   hf:<user>/<repo>/<file>.gguf             a GGUF downloaded from Hugging Face
#   openai-compatible:http://host:8000/v1    any server with the completions API (vLLM, SGLang, llama.cpp server)
model: llama-cpp:./models/base.gguf

# The constitution folder: principles, exemplars, red-team types, seed tasks and prompts.
# Check it after editing with: selfalign constitution check ./constitution
constitution: ./constitution

# How much each stage produces. The paper's figures are far larger (about 267k self-instruct and 99k
# red-team prompts); start small, look at the records, then scale up.
stages:
  # Stage 1a: new instructions from the seed tasks.
  self-instruct:
    count: 2000
  # Stage 1b: topics per red-team type, then one question per topic.
  red-team:
    topicsPerType: 20
    count: 400
  # Stage 2: principle-driven answers to every stage-1 prompt (samples per prompt).
  self-align:
    samplesPerPrompt: 1
  # Stage 3: LoRA fine-tuning on the kept answers (principles and thoughts removed).
  engrave:
    epochs: 1
  # Stage 4: verbose answers from the engraved model, then a fresh LoRA on them.
  verbose-clone:
    count: 2000
`;
}
