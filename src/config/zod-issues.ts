/** Turn zod issues into messages a person editing YAML can act on: which field, what was wrong, how to fix it. */
import { z } from "zod";

export interface DescribedIssue {
  path: PropertyKey[];
  message: string;
}

/** One message per problem; unknown keys point at the key itself and list the fields the entry accepts. */
export function describeZodIssues(issues: readonly z.core.$ZodIssue[], value: unknown, schema: z.ZodType) {
  const described: DescribedIssue[] = [];
  for (const issue of issues) {
    const path = [...issue.path];
    if (issue.code === "unrecognized_keys") {
      const allowed = fieldsAt(schema, path);
      for (const key of issue.keys) {
        described.push({
          path: [...path, key],
          message: `unknown field "${key}"${allowed ? `; allowed fields: ${allowed.join(", ")}` : ""} (check its spelling)`,
        });
      }
      continue;
    }
    const parent = valueAt(value, path.slice(0, -1));
    const key = path[path.length - 1];
    const isMissing =
      (issue.code === "invalid_type" || issue.code === "invalid_union") &&
      key !== undefined &&
      parent !== null &&
      typeof parent === "object" &&
      !Array.isArray(parent) &&
      !(String(key) in parent);
    if (isMissing) {
      described.push({ path, message: `missing required field "${String(key)}"; add it` });
      continue;
    }
    const got = valueAt(value, path);
    const shown = got === undefined ? "" : ` (got ${preview(got)})`;
    described.push({ path, message: `${lowerFirst(issue.message)}${shown}` });
  }
  return described;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/** The field names an object schema at `path` accepts (through arrays, optionals and defaults). */
function fieldsAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let current: z.ZodType | undefined = unwrap(schema);
  for (const key of path) {
    if (current instanceof z.ZodObject) current = unwrap(current.shape[String(key)] as z.ZodType | undefined);
    else if (current instanceof z.ZodArray) current = unwrap(current.element as z.ZodType);
    else return undefined;
  }
  return current instanceof z.ZodObject ? Object.keys(current.shape) : undefined;
}

function unwrap(schema: z.ZodType | undefined): z.ZodType | undefined {
  let current = schema;
  while (current instanceof z.ZodOptional || current instanceof z.ZodDefault || current instanceof z.ZodPrefault) {
    current = current.unwrap() as z.ZodType;
  }
  return current;
}

function preview(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
