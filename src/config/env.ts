/**
 * The one module that reads environment variables. Everything else asks here, so the variables selfalign honours
 * are listed in one place: CI, NO_COLOR, SELFALIGN_CACHE_DIR, SELFALIGN_LOG, SELFALIGN_OFFLINE, and API keys via
 * `readSecretEnv`.
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors/index.js";

export const logLevels = ["silent", "warn", "info", "debug"] as const;
export type LogLevel = (typeof logLevels)[number];

export interface SelfalignEnv {
  /** `CI` is set (and not "false"/"0"): render plain log lines instead of live bars. */
  ci: boolean;
  /** `NO_COLOR` is set to anything non-empty (https://no-color.org). */
  noColor: boolean;
  /** `SELFALIGN_CACHE_DIR`, default `~/.cache/selfalign` (downloaded models, built kernels). */
  cacheDir: string;
  /** `SELFALIGN_LOG`: silent | warn | info | debug. Default info. */
  logLevel: LogLevel;
  /** `SELFALIGN_OFFLINE` (or `HF_HUB_OFFLINE`) is set: never download models; use local files and the cache only. */
  offline: boolean;
}

type Environment = Record<string, string | undefined>;

function flag(value: string | undefined): boolean {
  return value !== undefined && value !== "" && value !== "0" && value.toLowerCase() !== "false";
}

/** Read selfalign's environment variables (from `env`, default `process.env`). */
export function readEnv(env: Environment = process.env): SelfalignEnv {
  const level = (env.SELFALIGN_LOG ?? "info").trim().toLowerCase() || "info";
  if (!(logLevels as readonly string[]).includes(level)) {
    throw new ConfigError(
      `environment variable SELFALIGN_LOG must be one of ${logLevels.join(", ")}, got "${env.SELFALIGN_LOG}"; ` +
        "set it to one of these or unset it",
      { field: "SELFALIGN_LOG" },
    );
  }
  const cache = env.SELFALIGN_CACHE_DIR?.trim();
  return {
    ci: flag(env.CI),
    noColor: env.NO_COLOR !== undefined && env.NO_COLOR !== "",
    cacheDir: cache ? resolve(cache) : join(env.HOME || homedir(), ".cache", "selfalign"),
    logLevel: level as LogLevel,
    offline: flag(env.SELFALIGN_OFFLINE) || flag(env.HF_HUB_OFFLINE),
  };
}

export interface ReadSecretOptions {
  /** Throw a ConfigError when the variable is unset or empty. Default false. */
  required?: boolean;
  /** What the secret is for, used in the error message, e.g. "the OpenAI-compatible backend". */
  purpose?: string;
}

/**
 * Read a secret (an API key) from the environment. The value is never logged or put in an error message;
 * only the variable's name is.
 */
export function readSecretEnv(
  name: string,
  options?: ReadSecretOptions & { required: true },
  env?: Environment,
): string;
export function readSecretEnv(name: string, options?: ReadSecretOptions, env?: Environment): string | undefined;
export function readSecretEnv(
  name: string,
  options: ReadSecretOptions = {},
  env: Environment = process.env,
): string | undefined {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new ConfigError(`"${name}" is not a valid environment variable name (use letters, digits and "_")`);
  }
  const value = env[name]?.trim();
  if (value) return value;
  if (options.required) {
    throw new ConfigError(
      `environment variable ${name} is not set${options.purpose ? ` (needed by ${options.purpose})` : ""}; ` +
        `export ${name}=... before running selfalign`,
      { field: name },
    );
  }
  return undefined;
}
