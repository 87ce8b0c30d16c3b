import { basename } from "node:path";
import { type Command, Option } from "commander";
import { readSecretEnv } from "../../config/env.js";
import { ConfigError } from "../../errors/index.js";
import { formatServedRequest, startServer } from "../../serve/server.js";
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

/** Default model id: the file name without `.gguf` (`hf:owner/repo/file.gguf` -> `file`). */
export function defaultModelName(model: string): string {
  return basename(model).replace(/\.gguf$/i, "") || "selfalign";
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("Serve a GGUF model (with LoRA adapters) as an OpenAI-compatible HTTP API.")
    .requiredOption("--model <gguf|hf:uri>", "GGUF file or hf:owner/repo/file.gguf")
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
    .action(async (options) => {
      const adapters = [...options.adapter, ...options.lora];
      const apiKey = options.apiKeyEnv
        ? readSecretEnv(options.apiKeyEnv, { required: true, purpose: "selfalign serve --api-key-env" })
        : undefined;
      // Loaded here, not at the top: node-llama-cpp would slow every other command's start.
      const { createLlamaCppBackend } = await import("../../backends/llama-cpp/index.js");
      const model = await createLlamaCppBackend({
        model: options.model,
        lora: adapters.length > 0 ? adapters : undefined,
        contextSize: options.ctx,
        sequences: options.parallel,
        threads: options.threads,
      });
      const modelName = options.modelName ?? defaultModelName(options.model);
      let server: Awaited<ReturnType<typeof startServer>>;
      try {
        server = await startServer({
          model,
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
        await model.close();
        throw error;
      }
      process.stdout.write(
        `selfalign serve: ${modelName} at ${server.url}${apiKey ? " (bearer token required)" : ""}; Ctrl+C to stop\n`,
      );
      // First Ctrl+C: stop accepting requests, abort those in flight, release the model; a second one forces exit.
      await withInterrupt(
        (signal) =>
          new Promise<void>((resolve) => {
            signal.addEventListener("abort", () => resolve(), { once: true });
          }),
      );
      await server.close();
      await model.close();
    });
}
