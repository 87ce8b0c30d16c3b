/**
 * llama.cpp's source tree as node-llama-cpp ships it: a git bundle (`node-llama-cpp/llama/gitRelease.bundle`) of the
 * exact llama.cpp commit its binaries were built from. Its `models/ggml-vocab-*.gguf` files are vocabulary-only GGUFs
 * of real tokenizers (with `.inp`/`.out` tokenizer test vectors) and `models/templates/` holds real chat templates:
 * what `selfalign model tiny --vocab` and `--chat-template` use, read here without any download.
 *
 * The bundle is cloned once (bare, about 35 MB) into the cache folder, keyed by its commit; files are read with
 * `git cat-file`. This needs git on PATH.
 */
import { execFile } from "node:child_process";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { readEnv } from "../config/env.js";
import { ConfigError } from "../errors/index.js";

const run = promisify(execFile);

/** Where llama.cpp's vocabulary files sit in its source tree, and their name pattern. */
const vocabularyFolder = "models";
const vocabularyPattern = /^ggml-vocab-(.+)\.gguf$/;
const templateFolder = "models/templates";

export interface LlamaCppSourceOptions {
  /** Folder for the unpacked bundle. Default: `llama.cpp/` under SELFALIGN_CACHE_DIR (~/.cache/selfalign). */
  cacheDir?: string;
}

/** One llama.cpp commit's source tree, read-only. */
export interface LlamaCppSource {
  /** The commit the bundle holds (node-llama-cpp's binaries were built from it). */
  commit: string;
  /** The bundle inside the installed node-llama-cpp package. */
  bundlePath: string;
  /** File names directly inside `folder` (a path in the source tree). */
  list(folder: string): Promise<string[]>;
  /** A file's bytes; ConfigError when the tree has no such file. */
  read(path: string): Promise<Buffer>;
  /** The file written once into the cache (`<cache>/<commit>/<path>`); returns its absolute path. */
  extract(path: string): Promise<string>;
}

/** Path of the llama.cpp source bundle in the installed node-llama-cpp package. */
export function llamaCppBundlePath(): string {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve("node-llama-cpp");
  } catch (error) {
    throw new ConfigError("node-llama-cpp is not installed, so llama.cpp's vocabularies cannot be read", {
      cause: error,
    });
  }
  // The package's entry point is dist/index.js; its root holds llama/.
  let dir = dirname(entry);
  while (
    !existsSync(join(dir, "llama", "gitRelease.bundle")) &&
    dirname(dir) !== dir &&
    basename(dir) !== "node_modules"
  )
    dir = dirname(dir);
  return join(dir, "llama", "gitRelease.bundle");
}

async function git(args: string[], options: { encoding: "buffer" } | { encoding: "utf8" }): Promise<Buffer | string> {
  try {
    const { stdout } = await run("git", args, { ...options, maxBuffer: 1 << 30 });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: Buffer | string };
    if (failure.code === "ENOENT") {
      throw new ConfigError(
        "reading llama.cpp's vocabularies from node-llama-cpp's source bundle needs git on PATH (e.g. apt-get install git); or pass a vocabulary file instead (--vocab path/to/model-or-vocab.gguf)",
        { cause: error },
      );
    }
    throw error;
  }
}

const opened = new Map<string, Promise<LlamaCppSource>>();

/** Open (unpacking once into the cache) the llama.cpp source tree bundled with node-llama-cpp. */
export function openLlamaCppSource(options: LlamaCppSourceOptions = {}): Promise<LlamaCppSource> {
  const cacheDir = options.cacheDir ?? join(readEnv().cacheDir, "llama.cpp");
  let source = opened.get(cacheDir);
  if (!source) {
    source = unpack(cacheDir);
    opened.set(cacheDir, source);
    source.catch(() => opened.delete(cacheDir));
  }
  return source;
}

async function unpack(cacheDir: string): Promise<LlamaCppSource> {
  const bundlePath = llamaCppBundlePath();
  try {
    await stat(bundlePath);
  } catch (error) {
    throw new ConfigError(`node-llama-cpp's llama.cpp source bundle is missing (expected ${bundlePath})`, {
      path: bundlePath,
      cause: error,
    });
  }
  const heads = String(await git(["bundle", "list-heads", bundlePath], { encoding: "utf8" }));
  const commit = /^([0-9a-f]{40}) HEAD$/m.exec(heads)?.[1] ?? /^([0-9a-f]{40}) /m.exec(heads)?.[1];
  if (!commit) throw new ConfigError(`no commit found in ${bundlePath}`, { path: bundlePath });
  const gitDir = join(cacheDir, `${commit}.git`);
  const exists = await stat(join(gitDir, "HEAD")).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(cacheDir, { recursive: true });
    // Clone beside the final name and rename: two processes unpacking at once never see half a repository.
    const partial = `${gitDir}.partial-${process.pid}-${Date.now()}`;
    try {
      await git(["clone", "--quiet", "--bare", bundlePath, partial], { encoding: "utf8" });
      await rename(partial, gitDir).catch(async (error: NodeJS.ErrnoException) => {
        // Another process finished first: use its copy.
        if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
      });
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }
  const tree = (path: string) => `${commit}:${path}`;
  const read = async (path: string): Promise<Buffer> => {
    try {
      return (await git([`--git-dir=${gitDir}`, "cat-file", "blob", tree(path)], { encoding: "buffer" })) as Buffer;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw new ConfigError(`llama.cpp ${commit.slice(0, 10)} has no file ${path}`, { path, cause: error });
    }
  };
  return {
    commit,
    bundlePath,
    read,
    async extract(path) {
      const target = join(cacheDir, commit, path);
      const present = await stat(target).then(
        () => true,
        () => false,
      );
      if (!present) {
        await mkdir(dirname(target), { recursive: true });
        const partial = `${target}.partial-${process.pid}-${Date.now()}`;
        await writeFile(partial, await read(path));
        await rename(partial, target);
      }
      return target;
    },
    async list(folder) {
      const out = String(
        await git([`--git-dir=${gitDir}`, "ls-tree", "--name-only", tree(folder)], { encoding: "utf8" }),
      );
      return out.split("\n").filter((line) => line.length > 0);
    },
  };
}

/** Names of the vocabulary files in llama.cpp's `models/` folder (`llama-bpe` for ggml-vocab-llama-bpe.gguf). */
export async function llamaCppVocabularyNames(source: LlamaCppSource): Promise<string[]> {
  const names: string[] = [];
  for (const file of await source.list(vocabularyFolder)) {
    const match = vocabularyPattern.exec(file);
    if (match?.[1]) names.push(match[1]);
  }
  return names;
}

/** Path in the source tree of the vocabulary `name`. */
export function llamaCppVocabularyPath(name: string): string {
  return `${vocabularyFolder}/ggml-vocab-${name}.gguf`;
}

/** Names of the chat templates in llama.cpp's `models/templates/` (file names without `.jinja`). */
export async function llamaCppTemplateNames(source: LlamaCppSource): Promise<string[]> {
  return (await source.list(templateFolder)).filter((f) => f.endsWith(".jinja")).map((f) => f.slice(0, -6));
}

/** Path in the source tree of the chat template `name`. */
export function llamaCppTemplatePath(name: string): string {
  return `${templateFolder}/${name}.jinja`;
}

/**
 * llama.cpp's tokenizer test vectors for a vocabulary (`<vocab>.gguf.inp` / `.out`), parsed as its
 * tests/test-tokenizer-0.cpp does: texts separated by "\n__ggml_vocab_test__\n", one line of ids per text,
 * tokenised without BOS/EOS and without parsing special tokens. Undefined when the vocabulary has none.
 */
export async function llamaCppTokenizerTests(
  source: LlamaCppSource,
  name: string,
): Promise<Array<{ text: string; tokens: number[] }> | undefined> {
  const base = llamaCppVocabularyPath(name);
  const files = await source.list(vocabularyFolder);
  const file = base.slice(vocabularyFolder.length + 1);
  if (!files.includes(`${file}.inp`) || !files.includes(`${file}.out`)) return undefined;
  const raw = (await source.read(`${base}.inp`)).toString("utf8");
  const lines = (await source.read(`${base}.out`)).toString("utf8").split("\n");
  // getline: a final newline ends the last line rather than starting an empty one.
  if (lines.at(-1) === "") lines.pop();
  const separator = "\n__ggml_vocab_test__\n";
  const texts: string[] = [];
  for (let at = 0; at < raw.length; ) {
    const next = raw.indexOf(separator, at);
    if (next < 0) {
      texts.push(raw.slice(at));
      break;
    }
    texts.push(raw.slice(at, next));
    at = next + separator.length;
  }
  if (texts.length !== lines.length) {
    throw new ConfigError(
      `llama.cpp's tokenizer tests for ${name} have ${texts.length} texts but ${lines.length} lines of tokens`,
      { path: base },
    );
  }
  return texts.map((text, i) => ({
    text,
    tokens: lines[i]!.trim().split(" ").filter(Boolean).map(Number),
  }));
}
