/**
 * Command-line flags derived from a zod options schema (a stage's or an eval task's), so the YAML config,
 * `selfalign stage <name>`, `selfalign eval <task>` and their `--help` share one source of names, types, defaults and
 * descriptions. Nested options become dashed flags
 * (`sampling.maxTokens` -> `--sampling-max-tokens`); lists, maps and model objects take JSON, except a list marked
 * `.meta({ repeatable: true })`, which collects a repeated flag (`--data a --data b`). `.meta({ placeholder: "<spec>" })`
 * names the value in `--help`. The values go through the schema once, at the boundary.
 */
import type { Command } from "commander";
import { globalRegistry, type ZodType } from "zod";
import { ConfigError } from "../errors/index.js";

/** One flag: the option path it sets and how its text is read. */
export interface SchemaFlag {
  flag: string;
  path: string[];
  kind: "number" | "boolean" | "string" | "json" | "list";
  description: string;
  defaultValue?: unknown;
  /** Shown for the value in `--help`. Default `<value>`. */
  placeholder?: string;
}

/** The metadata a field may carry for its flag (in zod's global registry, with `.meta()`). */
interface FlagMeta {
  repeatable?: boolean;
  placeholder?: string;
}

interface ZodDef {
  type: string;
  innerType?: ZodType;
  defaultValue?: unknown;
  shape?: Record<string, ZodType>;
  entries?: Record<string, string>;
  options?: ZodType[];
}

const defOf = (schema: ZodType) => (schema as unknown as { def: ZodDef }).def;
const descriptionOf = (schema: ZodType) => (schema as unknown as { description?: string }).description;

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Unwrap optional / default / prefault layers, keeping the first description and default met. */
function unwrap(schema: ZodType): { inner: ZodType; description?: string; defaultValue?: unknown; meta: FlagMeta } {
  let inner = schema;
  let description = descriptionOf(schema);
  let defaultValue: unknown;
  const meta: FlagMeta = {};
  for (;;) {
    const found = globalRegistry.get(inner) as FlagMeta | undefined;
    meta.repeatable ??= found?.repeatable;
    meta.placeholder ??= found?.placeholder;
    const def = defOf(inner);
    if (!["optional", "default", "prefault", "nullable"].includes(def.type) || !def.innerType) break;
    if ((def.type === "default" || def.type === "prefault") && defaultValue === undefined)
      defaultValue = def.defaultValue;
    inner = def.innerType;
    description ??= descriptionOf(inner);
  }
  return {
    inner,
    meta,
    ...(description ? { description } : {}),
    ...(defaultValue !== undefined ? { defaultValue } : {}),
  };
}

/** The flags of an object schema's fields, recursing into nested objects. */
export function schemaFlags(schema: ZodType, prefix: string[] = []): SchemaFlag[] {
  const shape = defOf(unwrap(schema).inner).shape ?? {};
  const flags: SchemaFlag[] = [];
  for (const [name, field] of Object.entries(shape)) {
    const path = [...prefix, name];
    const { inner, description, defaultValue, meta } = unwrap(field);
    const type = defOf(inner).type;
    if (type === "object") {
      flags.push(...schemaFlags(inner, path));
      continue;
    }
    const kind: SchemaFlag["kind"] =
      type === "array" && meta.repeatable
        ? "list"
        : type === "number"
          ? "number"
          : type === "boolean"
            ? "boolean"
            : type === "string" || type === "enum"
              ? "string"
              : "json";
    const choices = type === "enum" ? ` (${Object.values(defOf(inner).entries ?? {}).join(", ")})` : "";
    flags.push({
      flag: path.map(kebab).join("-"),
      path,
      kind,
      description: `${description ?? path.join(".")}${choices}`,
      ...(defaultValue !== undefined && typeof defaultValue !== "object" ? { defaultValue } : {}),
      ...(meta.placeholder ? { placeholder: meta.placeholder } : {}),
    });
  }
  return flags;
}

function parseValue(flag: SchemaFlag, text: string): unknown {
  if (flag.kind === "number") {
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value)) {
      throw new ConfigError(`--${flag.flag} expects a number, got "${text}"`, { field: flag.path.join(".") });
    }
    return value;
  }
  if (flag.kind === "json") {
    try {
      return JSON.parse(text);
    } catch {
      // A model spec or a plain word is a string.
      return text;
    }
  }
  return text;
}

/** Add the flags to a command (aliases: extra flag -> option path, for short names kept from before). */
export function addSchemaFlags(command: Command, flags: SchemaFlag[], aliases: Readonly<Record<string, string>> = {}) {
  for (const flag of flags) {
    const defaultText = flag.defaultValue === undefined ? "" : ` (default ${JSON.stringify(flag.defaultValue)})`;
    if (flag.kind === "boolean") {
      command.option(`--${flag.flag}`, `${flag.description}${defaultText}`);
      command.option(`--no-${flag.flag}`, `turn off --${flag.flag}`);
    } else if (flag.kind === "list") {
      command.option(
        `--${flag.flag} ${flag.placeholder ?? "<value>"}`,
        `${flag.description} (repeatable)${defaultText}`,
        (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
      );
    } else {
      command.option(`--${flag.flag} ${flag.placeholder ?? "<value>"}`, `${flag.description}${defaultText}`);
    }
  }
  for (const [alias, path] of Object.entries(aliases)) {
    const target = flags.find((flag) => flag.path.join(".") === path);
    if (target && target.flag !== alias) command.option(`--${alias} <value>`, `same as --${target.flag}`);
  }
}

const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * The options object the flags given on the command line describe (commander's parsed values in, nested option
 * values out); flags not given are left out, so the schema's defaults apply.
 */
export function valuesFromFlags(
  parsed: Record<string, unknown>,
  flags: SchemaFlag[],
  aliases: Readonly<Record<string, string>> = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const set = (path: string[], value: unknown) => {
    let node = out;
    for (const part of path.slice(0, -1)) {
      node[part] ??= {};
      node = node[part] as Record<string, unknown>;
    }
    node[path.at(-1)!] = value;
  };
  for (const flag of flags) {
    const value = parsed[camel(flag.flag)];
    if (value === undefined) continue;
    set(flag.path, typeof value === "string" ? parseValue(flag, value) : value);
  }
  for (const [alias, path] of Object.entries(aliases)) {
    const value = parsed[camel(alias)];
    const flag = flags.find((one) => one.path.join(".") === path);
    if (value === undefined || !flag) continue;
    set(flag.path, typeof value === "string" ? parseValue(flag, value) : value);
  }
  return out;
}
