/**
 * Command-line flags made from a zod object schema, so the schema is the one source of a command's options, their
 * defaults and help text: each field `maxTokens` becomes `--max-tokens <n>`, described by its `.describe()` or
 * `.meta({ description, value })` text, with the schema's default shown in `--help`. Parsed flags go through the
 * schema once; a bad value is a ConfigError naming the flag.
 */
import { type Command, Option } from "commander";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";

/** Metadata a schema field may carry for its flag: the placeholder shown in help (default by type). */
export interface FlagMeta {
  description?: string;
  /** e.g. "<spec>"; default `<value>`, `<n>` for numbers, the choices for an enum. */
  value?: string;
}

/** `maxTokens` -> `max-tokens`. */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

interface FieldInfo {
  kind: "string" | "number" | "boolean" | "array" | "enum";
  choices?: readonly string[];
  defaultValue?: unknown;
  meta: FlagMeta;
}

function fieldInfo(field: z.ZodType): FieldInfo {
  const meta: FlagMeta = {};
  let defaultValue: unknown;
  let inner: z.ZodType = field;
  for (;;) {
    const found = z.globalRegistry.get(inner) as FlagMeta | undefined;
    meta.description ??= found?.description;
    meta.value ??= found?.value;
    if (inner instanceof z.ZodOptional) inner = inner.unwrap() as z.ZodType;
    else if (inner instanceof z.ZodDefault) {
      defaultValue ??= inner.def.defaultValue;
      inner = inner.unwrap() as z.ZodType;
    } else break;
  }
  if (inner instanceof z.ZodNumber) return { kind: "number", defaultValue, meta };
  if (inner instanceof z.ZodBoolean) return { kind: "boolean", defaultValue, meta };
  if (inner instanceof z.ZodArray) return { kind: "array", defaultValue, meta };
  if (inner instanceof z.ZodEnum) return { kind: "enum", choices: inner.options as string[], defaultValue, meta };
  return { kind: "string", defaultValue, meta };
}

function parseNumber(flag: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (value.trim() === "" || !Number.isFinite(parsed))
      throw new ConfigError(`--${flag} expects a number, got "${value}"`);
    return parsed;
  };
}

/** Add one option per field of `schema` to `command`. */
export function addSchemaOptions(command: Command, schema: z.ZodObject): void {
  for (const [key, field] of Object.entries(schema.shape)) {
    const flag = flagName(key);
    const info = fieldInfo(field as z.ZodType);
    const placeholder =
      info.meta.value ?? (info.kind === "number" ? "<n>" : info.kind === "enum" ? `<${flag}>` : "<value>");
    const option = new Option(
      info.kind === "boolean" ? `--${flag}` : `--${flag} ${placeholder}`,
      info.meta.description ?? "",
    );
    if (info.kind === "number") option.argParser(parseNumber(flag));
    if (info.kind === "enum" && info.choices) option.choices(info.choices);
    if (info.kind === "array") {
      option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
    }
    if (info.defaultValue !== undefined) option.default(info.defaultValue);
    command.addOption(option);
  }
}

/** Validate parsed flags with `schema`; the first problem is a ConfigError naming its flag. */
export function parseSchemaOptions<T>(schema: z.ZodObject, values: Record<string, unknown>): T {
  // A list flag given no times reads as an empty list, which the schema may refuse with its own message.
  const lists = Object.entries(schema.shape).filter(([, field]) => fieldInfo(field as z.ZodType).kind === "array");
  const filled = { ...values };
  for (const [key] of lists) filled[key] ??= [];
  const parsed = schema.safeParse(filled);
  if (parsed.success) return parsed.data as T;
  const issue = parsed.error.issues[0]!;
  const key = issue.path[0];
  const flag = typeof key === "string" ? flagName(key) : undefined;
  // The message names the flag itself (a `field` would be printed before it a second time).
  throw new ConfigError(flag ? `--${flag}: ${issue.message}` : issue.message);
}
