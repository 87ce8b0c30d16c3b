/**
 * The commands to paste after a run: talk to the trained adapter, serve it, rebuild the report. They are written the
 * way this process was started (`npm run selfalign --`, `npx selfalign`, `selfalign`, or `node <cli.js>`), so they
 * work in the same shell as they are.
 */
import { basename, dirname, isAbsolute, relative, resolve } from "node:path";

/** How the running CLI was invoked, as a command prefix. */
export function cliInvocation(
  argv: readonly string[] = process.argv,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
  execArgv: readonly string[] = process.execArgv,
): string {
  if (env.npm_lifecycle_event === "selfalign") return "npm run selfalign --";
  const script = argv[1] ?? "";
  if (basename(script) === "selfalign")
    return resolve(dirname(script)) === resolve(cwd, "node_modules", ".bin") ? "npx selfalign" : "selfalign";
  // Node's own options (e.g. --import tsx when run from source) are part of how to start it.
  return ["node", ...execArgv, displayPath(script, cwd)].map(shellWord).join(" ");
}

/** A path as short as it can be pasted: relative to `cwd` when it lies under it. */
export function displayPath(path: string, cwd: string = process.cwd()): string {
  const shown = relative(cwd, resolve(cwd, path));
  return shown === "" ? "." : shown.startsWith("..") || isAbsolute(shown) ? resolve(cwd, path) : shown;
}

/** `word` quoted for a POSIX shell when it needs it. */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

export interface NextCommandsInput {
  /** The base model the adapter goes on: a GGUF path or an hf: URI. */
  baseModel?: string;
  /** The adapter to try (the final one, else the engraved one). */
  adapter?: string;
  runDir: string;
}

/** Ready-to-paste `chat`, `serve` and `report` lines (chat and serve only when there is an adapter and a base). */
export function formatNextCommands(input: NextCommandsInput, cli = cliInvocation(), cwd = process.cwd()): string {
  const path = (value: string) => (/^hf:/.test(value) ? value : shellWord(displayPath(value, cwd)));
  const lines: string[] = [];
  if (input.adapter && input.baseModel) {
    const model = `--model ${path(input.baseModel)} --adapter ${path(input.adapter)}`;
    lines.push(`  ${cli} chat ${model}`, `  ${cli} serve ${model}`);
  }
  lines.push(`  ${cli} report ${path(input.runDir)}`);
  return `Next:\n${lines.join("\n")}\n`;
}
