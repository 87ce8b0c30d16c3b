/**
 * SALMON's RL on a GPU cluster (method-spec B.5) through OpenRLHF: the prompt JSONL OpenRLHF's PPO reads (`prompt`:
 * the engraved chat prompt the SFT model was trained on, the explicit template the reference lacked; `label`: the
 * request and its prompt type, for `selfalign serve --reward-model`), and a ready launch script for the pinned
 * OpenRLHF version: merge the SFT adapter into the base, check the reward server answers, run train_ppo_ray.
 */
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Constitution, SalmonPromptType } from "../../constitution/index.js";
import { encodeRewardLabel } from "../../serve/reward/openrlhf-request.js";
import {
  type OpenRlhfPpoOptionsInput,
  openRlhfMergeArguments,
  openRlhfOldestVersion,
  openRlhfPpoArguments,
  openRlhfVersion,
} from "../../training/openrlhf/openrlhf-commands.js";
import { chatPrompt, type PromptStyle } from "../engrave/prompt.js";

/** One RL prompt as OpenRLHF reads it (`--data.input_key prompt --data.label_key label`). */
export interface OpenRlhfPromptRow {
  id: string;
  prompt: string;
  /** JSON {instruction, input?, promptType} as a string (see encodeRewardLabel). */
  label: string;
}

export interface RlPrompt {
  id: string;
  instruction: string;
  input?: string;
  promptType: SalmonPromptType;
}

/** The row of one prompt: the policy's chat prompt and the label the reward server reads the request from. */
export function openRlhfPromptRow(constitution: Constitution, prompt: RlPrompt, style: PromptStyle): OpenRlhfPromptRow {
  return {
    id: prompt.id,
    prompt: chatPrompt(constitution.assistant, style, prompt.instruction, prompt.input ?? ""),
    label: encodeRewardLabel({
      instruction: prompt.instruction,
      ...(prompt.input ? { input: prompt.input } : {}),
      promptType: prompt.promptType,
    }),
  };
}

export interface OpenRlhfScriptOptions {
  /** The Hugging Face base the SFT adapter belongs to (merged into it for OpenRLHF). */
  base?: string;
  /** The SFT adapter as a PEFT folder. Without one, `actor` (or the base) is trained as it is. */
  sftAdapter?: string;
  /** A whole policy model to train instead of merging (skips the merge). */
  actor?: string;
  /** The reward model folder, for the `selfalign serve` line the script prints when the server does not answer. */
  rewardModel?: string;
  /** The base as a GGUF, for the conversion back to llama.cpp at the end. */
  baseGguf?: string;
  /** PPO settings (SALMON's by default); prompts, output and checkpoints are set by the export. */
  ppo?: Omit<OpenRlhfPpoOptionsInput, "actor" | "prompts" | "output" | "checkpoints">;
}

/** POSIX shell single-quoting. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'"'"'`)}'`;
}

/**
 * `program args...` as shell lines, one flag and its value per line; `$NAME` values stay shell variables (in double
 * quotes), everything else is single-quoted where it needs to be.
 */
export function shellCommand(program: string, args: readonly string[]): string {
  const word = (arg: string) => (/^\$[A-Z_]+$/.test(arg) ? `"${arg}"` : shellQuote(arg));
  const lines: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (arg.startsWith("-") && next !== undefined && !next.startsWith("-")) {
      lines.push(`${word(arg)} ${word(next)}`);
      i++;
    } else lines.push(word(arg));
  }
  return [program, ...lines].join(" \\\n  ");
}

/** The launch script, run from anywhere (paths are absolute); environment variables override its defaults. */
export function openRlhfPpoScript(dir: string, options: OpenRlhfScriptOptions): string {
  const at = (name: string) => join(resolve(dir), name);
  // Inside double quotes only \ " $ and ` are special.
  const env = (name: string, value: string | undefined) =>
    `${name}="\${${name}:-${(value ?? "").replace(/[\\"$`]/g, (c) => `\\${c}`)}}"`;
  const ppo = openRlhfPpoArguments({
    ...options.ppo,
    actor: "$ACTOR",
    rewardUrl: "$REWARD_URL",
    prompts: at("prompts.jsonl"),
    output: "$OUTPUT",
    checkpoints: "$CHECKPOINTS",
  });
  const merge = openRlhfMergeArguments("$BASE", "$SFT_ADAPTER", "$ACTOR");
  const serveLine = `selfalign serve --reward-model ${options.rewardModel ? shellQuote(options.rewardModel) : "<reward model folder>"} --host <cluster-internal address> --port 8000`;
  const convertLine = `selfalign model convert-peft --peft "$OUTPUT" --base ${options.baseGguf ? shellQuote(options.baseGguf) : "<base.gguf>"} --out ${shellQuote(at("ppo-adapter.gguf"))}`;
  return [
    "#!/usr/bin/env bash",
    `# SALMON's PPO (method-spec B.5) on OpenRLHF ${openRlhfVersion}, written by \`selfalign stage salmon-rl --trainer openrlhf\`.`,
    `# Needs: pip install openrlhf==${openRlhfVersion} (any release from ${openRlhfOldestVersion} takes these flags), a Ray cluster`,
    "# (one node: nothing to do; several: `ray start --head` here and `ray start --address=<head>:6379` on the others), and",
    "# the reward server running where every node can reach it:",
    `#   ${serveLine}`,
    "# Every setting below can be overridden from the environment, e.g. REWARD_URL=http://10.0.0.5:8000/get_reward.",
    "set -euo pipefail",
    env("BASE", options.base),
    env("SFT_ADAPTER", options.sftAdapter),
    env("ACTOR", options.actor ?? at("actor")),
    env("REWARD_URL", options.ppo?.rewardUrl ?? "http://127.0.0.1:8000/get_reward"),
    env("OUTPUT", at("ppo")),
    env("CHECKPOINTS", at("checkpoints")),
    "",
    `python3 - <<'EOF'`,
    "import importlib.metadata as m",
    'v = m.version("openrlhf")',
    'parts = tuple(int(p) for p in v.split(".")[:3] if p.isdigit())',
    `if parts < (${openRlhfOldestVersion.split(".").join(", ")}):`,
    `    raise SystemExit(f"OpenRLHF {v} is installed; this script needs ${openRlhfOldestVersion} or later (written for ${openRlhfVersion})")`,
    `if v != "${openRlhfVersion}":`,
    `    print(f"note: OpenRLHF {v} is installed; this script was written for ${openRlhfVersion}")`,
    "EOF",
    "",
    "# 1. The policy OpenRLHF trains is a whole model: the SFT adapter merged into its base (skipped if already there).",
    'if [ ! -f "$ACTOR/config.json" ]; then',
    '  if [ -z "$BASE" ] || [ -z "$SFT_ADAPTER" ]; then',
    '    echo "set ACTOR to the policy model, or BASE and SFT_ADAPTER (a PEFT folder) to merge it" >&2; exit 1',
    "  fi",
    `  ${shellCommand("python3", merge).replace(/\n/g, "\n  ")}`,
    "fi",
    "",
    "# 2. The reward server must answer before the first rollout (OpenRLHF gives up on a sample after 5 failed calls).",
    `if ! python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" "\${REWARD_URL%/get_reward}/health" 2>/dev/null; then`,
    `  echo "no reward server at \${REWARD_URL}; start it with: ${serveLine.replace(/"/g, '\\"')}" >&2; exit 1`,
    "fi",
    "",
    "# 3. PPO with SALMON's settings; the reward of every response comes from the reward server.",
    shellCommand("python3", ppo),
    "",
    "# 4. Back to llama.cpp: the trained LoRA (relative to the merged SFT model) as a GGUF adapter, served on top of the",
    "#    SFT adapter: selfalign serve --model <base.gguf> --adapter <sft adapter.gguf> --adapter ppo-adapter.gguf",
    `echo "PPO done: $OUTPUT. Convert it for llama.cpp with: ${convertLine.replace(/"/g, '\\"')}"`,
    "",
  ].join("\n");
}

export interface OpenRlhfExportResult {
  prompts: string;
  script: string;
  count: number;
}

/** Writes `dir`/prompts.jsonl and `dir`/train_ppo.sh (executable). */
export async function exportOpenRlhfPpo(
  dir: string,
  constitution: Constitution,
  prompts: readonly RlPrompt[],
  style: PromptStyle,
  options: OpenRlhfScriptOptions,
): Promise<OpenRlhfExportResult> {
  await mkdir(dir, { recursive: true });
  const rows = prompts.map((prompt) => openRlhfPromptRow(constitution, prompt, style));
  const promptsPath = join(dir, "prompts.jsonl");
  await writeFile(promptsPath, rows.map((row) => `${JSON.stringify(row)}\n`).join(""));
  const script = join(dir, "train_ppo.sh");
  await writeFile(script, openRlhfPpoScript(dir, options));
  await chmod(script, 0o755);
  return { prompts: promptsPath, script, count: rows.length };
}
