/** Parsers for command-line flags shared by several commands; each error names the flag and what it expects. */
import { ConfigError } from "../errors/index.js";

/** A commander parser for a positive integer flag. */
export function positiveInteger(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`--${flag} must be a positive integer, got "${value}"`);
    return n;
  };
}

/**
 * A repeatable LoRA flag, `path[:scale]`: a trailing `:<number>` is the scale; other colons belong to the path.
 * `flag` names the option in errors (`lora` for serve, `adapter` for chat).
 */
export function loraFlag(flag: string) {
  return (value: string, previous: Array<{ path: string; scale?: number }> = []) => {
    const match = /^(.*):(-?\d+(?:\.\d+)?)$/.exec(value);
    const entry = match ? { path: match[1]!, scale: Number(match[2]) } : { path: value };
    if (!entry.path) throw new ConfigError(`--${flag} expects path[:scale], got "${value}"`, { field: flag });
    return [...previous, entry];
  };
}
