import { basename, resolve } from "node:path";
import { type Command, Option } from "commander";
import type { LanguageModel } from "../../backends/language-model.js";
import { readSecretEnv } from "../../config/env.js";
import { ConfigError } from "../../errors/index.js";
import { defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import { readSpecialTokens } from "../../serve/reward/response-of-query.js";
import { RewardService } from "../../serve/reward/reward-service.js";
import { formatServedRequest, startServer } from "../../serve/server.js";
import { salmonOf } from "../../stages/salmon/reviewer-prompt.js";
import { loraFlag, positiveInteger } from "../flags.js";
import { withInterrupt } from "../interrupt.js";

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new ConfigError(`--port must be an integer from 0 to 65535 (0 picks a free port), got "${value}"`);
  return n;
}

/** `--adapter path[:scale]`, repeatable (as in `chat` and `eval`). */
export const parseAdapterFlag = loraFlag("adapter");
/** `--lora path[:scale]`: the flag's earlier name, still accepted (hidden from --help). */
export const parseLoraFlag = loraFlag("lora");

/** `--max-body <size>`: bytes, or with a k/m suffix (KiB, MiB). */
export function parseBodySize(value: string): number {
  const units: Record<string, number> = { "": 1, k: 1024, m: 1024 * 1024 };
  const match = /^(\d+)\s*([km]?)(?:i?b)?$/i.exec(value.trim());
  const bytes = match ? Number(match[1]) * units[match[2]!.toLowerCase()]! : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new ConfigError(`--max-body must be a size such as 1048576, 512k or 4m, got "${value}"`);
  return bytes;
}

function integer(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw new ConfigError(`--${name} must be an integer, got "${value}"`);
    return n;
  };
}

function finite(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) throw new ConfigError(`--${name} must be a number, got "${value}"`);
    return n;
  };
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/** The reward model, its special tokens and the constitution, as the /get_reward route needs them. */
async function rewardRoute(
  options: Record<string, unknown>,
  resources: Array<() => Promise<void>>,
): Promise<{ service: RewardService; log: (level: string, text: string) => void }> {
  const { RewardModel } = await import("../../training/reward/reward-model.js");
  const constitution = await loadConstitution(
    options.constitution ? resolve(String(options.constitution)) : defaultConstitutionDir(),
  );
  salmonOf(constitution);
  const model = await RewardModel.load(String(options.rewardModel), {
    ...(options.rewardBase ? { base: String(options.rewardBase) } : {}),
    ...(options.ctx ? { contextSize: Number(options.ctx) } : {}),
    ...(options.threads ? { threads: Number(options.threads) } : {}),
    parallel: Number(options.rewardParallel ?? 1),
  });
  resources.push(() => model.dispose());
  const log = (level: string, text: string) => process.stderr.write(`reward ${level}: ${text}\n`);
  const service = new RewardService({
    model,
    constitution,
    specialTokens: await readSpecialTokens(model.basePath),
    reward: {
      ...(options.rlPrinciples === undefined ? {} : { principles: Number(options.rlPrinciples) }),
      ...(options.rewardSeed === undefined ? {} : { seed: Number(options.rewardSeed) }),
      ...(options.stopPenalty === undefined ? {} : { stopPenalty: Number(options.stopPenalty) }),
      ...(options.lengthBonus === undefined ? {} : { lengthBonus: Number(options.lengthBonus) }),
    },
    log,
  });
  return { service, log };
}

/** Default model id: the file name without `.gguf` (`hf:owner/repo/file.gguf` -> `file`). */
export function defaultModelName(model: string): string {
  return basename(model).replace(/\.gguf$/i, "") || "selfalign";
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(
      "Serve a GGUF model (with LoRA adapters) as an OpenAI-compatible HTTP API, and/or a SALMON reward model at " +
        "POST /get_reward for OpenRLHF's remote reward calls.",
    )
    .option("--model <gguf|hf:uri>", "GGUF file or hf:owner/repo/file.gguf")
    .option(
      "--adapter <path[:scale]>",
      "LoRA adapter GGUF, optionally with a scale (repeatable), e.g. runs/x/verbose-clone/adapter/adapter.gguf",
      parseAdapterFlag,
      [],
    )
    .addOption(new Option("--lora <path[:scale]>").argParser(parseLoraFlag).default([]).hideHelp())
    .option("--host <host>", "interface to listen on (0.0.0.0 exposes it to the network)", "127.0.0.1")
    .option("--port <n>", "port (0 picks a free one)", port, 8000)
    .option("--api-key-env <NAME>", "environment variable holding the bearer token clients must send")
    .option("--model-name <id>", "model id clients use (default: the file name without .gguf)")
    .option("--ctx <n>", "context size per sequence", positiveInteger("ctx"))
    .option(
      "--parallel <n>",
      "sequences decoded in parallel (also the concurrent-request limit)",
      positiveInteger("parallel"),
      4,
    )
    .option(
      "--threads <n>",
      "decode threads (default: measured per batch size, 1 against all cores)",
      positiveInteger("threads"),
    )
    .option(
      "--max-body <size>",
      "largest request body accepted, e.g. 1m or 512k (413 beyond)",
      parseBodySize,
      1024 * 1024,
    )
    .option("--log-requests", "print a line per request on stderr: method, path, status, tokens, milliseconds")
    .option(
      "--reward-model <dir>",
      "serve a reward model folder (reward-model.json) at POST /get_reward for OpenRLHF's --reward.remote_url",
    )
    .option("--reward-base <gguf>", "the reward model's base GGUF (default: where it was at training time)")
    .option("--constitution <dir>", "reward: the constitution whose RL principles and interventions to use")
    .option(
      "--reward-parallel <n>",
      "reward: texts scored at once, one context each",
      positiveInteger("reward-parallel"),
      1,
    )
    .option(
      "--rl-principles <n>",
      "reward: RL principles drawn per response (default 3)",
      positiveInteger("rl-principles"),
    )
    .option(
      "--reward-seed <n>",
      "reward: mixed into each response's principle draw (default 0)",
      integer("reward-seed"),
    )
    .option(
      "--stop-penalty <x>",
      "reward: added when a response never stopped (default -6; 0 = off)",
      finite("stop-penalty"),
    )
    .option("--length-bonus <x>", "reward: weight of the length bonus (default 5; 0 = off)", finite("length-bonus"))
    .option(
      "--reward-requires-key",
      "reward: POST /get_reward needs the --api-key-env token too (OpenRLHF sends none: off by default)",
    )
    .action(async (options) => {
      if (!options.model && !options.rewardModel)
        throw new ConfigError("give --model (an OpenAI-compatible API) or --reward-model (POST /get_reward), or both");
      const adapters = [...options.adapter, ...options.lora];
      const apiKey = options.apiKeyEnv
        ? readSecretEnv(options.apiKeyEnv, { required: true, purpose: "selfalign serve --api-key-env" })
        : undefined;
      if (options.rewardRequiresKey && !apiKey)
        throw new ConfigError("--reward-requires-key needs a token: give --api-key-env as well");
      const resources: Array<() => Promise<void>> = [];
      const release = async () => {
        for (const close of resources.reverse()) await close();
      };
      let server: Awaited<ReturnType<typeof startServer>>;
      let modelName: string;
      try {
        let model: LanguageModel | undefined;
        if (options.model) {
          // Loaded here, not at the top: node-llama-cpp would slow every other command's start.
          const { createLlamaCppBackend } = await import("../../backends/llama-cpp/index.js");
          model = await createLlamaCppBackend({
            model: options.model,
            lora: adapters.length > 0 ? adapters : undefined,
            contextSize: options.ctx,
            sequences: options.parallel,
            threads: options.threads,
          });
          const opened = model;
          resources.push(() => opened.close());
        }
        const reward = options.rewardModel ? await rewardRoute(options, resources) : undefined;
        modelName =
          options.modelName ??
          (options.model ? defaultModelName(options.model) : basename(resolve(options.rewardModel)));
        server = await startServer({
          ...(model ? { model } : {}),
          ...(reward ? { reward: { ...reward, requireApiKey: options.rewardRequiresKey === true } } : {}),
          modelName,
          host: options.host,
          port: options.port,
          apiKey,
          maxConcurrent: Math.max(16, options.parallel * 4),
          maxBodyBytes: options.maxBody,
          ...(options.logRequests
            ? { onRequest: (entry) => process.stderr.write(`${formatServedRequest(entry)}\n`) }
            : {}),
        });
      } catch (error) {
        await release();
        throw error;
      }
      const origin = server.url.replace(/\/v1$/, "");
      if (options.model) {
        process.stdout.write(
          `selfalign serve: ${modelName} at ${server.url}${apiKey ? " (bearer token required)" : ""}; Ctrl+C to stop\n`,
        );
      }
      if (options.rewardModel) {
        const open = !options.rewardRequiresKey;
        process.stdout.write(
          `selfalign serve: reward model ${basename(resolve(options.rewardModel))} at ${origin}/get_reward` +
            `${open ? " (no token: keep this address inside the cluster)" : " (bearer token required)"}; Ctrl+C to stop\n`,
        );
        if (open && !isLoopback(options.host)) {
          process.stderr.write(
            `note: POST /get_reward on ${options.host} answers anyone who can reach it; bind a cluster-internal address, or pass --reward-requires-key for clients that can send a token\n`,
          );
        }
      }
      // First Ctrl+C: stop accepting requests, abort those in flight, release the model; a second one forces exit.
      await withInterrupt(
        (signal) =>
          new Promise<void>((resolve) => {
            signal.addEventListener("abort", () => resolve(), { once: true });
          }),
      );
      await server.close();
      await release();
    });
}
