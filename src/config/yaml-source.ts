/**
 * Parse one YAML file keeping positions, so every later problem can name its line (constitution files, the
 * pipeline config).
 */
import { isMap, isNode, LineCounter, parseDocument } from "yaml";

export interface YamlSource {
  /** The file as plain JavaScript data. */
  value: unknown;
  /** 1-based line of the node at `path`, or of its nearest existing ancestor. */
  lineOf(path: ReadonlyArray<PropertyKey>): number | undefined;
}

/** A YAML syntax error, located by file and line. */
export interface YamlSyntaxIssue {
  severity: "error";
  file: string;
  line?: number;
  message: string;
}

export type ParseYamlResult = { ok: true; source: YamlSource } | { ok: false; issues: YamlSyntaxIssue[] };

/** Parse `text` (the content of `file`); syntax errors come back as issues naming file and line. */
export function parseYamlSource(file: string, text: string): ParseYamlResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((error) => ({
        severity: "error" as const,
        file,
        line: lineCounter.linePos(error.pos[0]).line,
        message: `invalid YAML: ${firstLine(error.message)}. Fix the syntax (indentation, quoting, "key: value").`,
      })),
    };
  }
  const lineOf = (path: ReadonlyArray<PropertyKey>): number | undefined => {
    for (let depth = path.length; depth >= 0; depth--) {
      const keys = path.slice(0, depth).map((key) => (typeof key === "symbol" ? String(key) : key));
      const node = depth === 0 ? doc.contents : doc.getIn(keys, true);
      if (isNode(node) && node.range) {
        // A mapping value's own position is where its key is written, which is what a reader looks for.
        const parent = depth === 0 ? undefined : depth === 1 ? doc.contents : doc.getIn(keys.slice(0, -1), true);
        const key = keys[keys.length - 1];
        if (isMap(parent)) {
          const pair = parent.items.find((item) => isNode(item.key) && (item.key as { value?: unknown }).value === key);
          if (pair && isNode(pair.key) && pair.key.range) return lineCounter.linePos(pair.key.range[0]).line;
        }
        return lineCounter.linePos(node.range[0]).line;
      }
    }
    return undefined;
  };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: maxAliasExpansions });
  } catch (error) {
    // The yaml library refuses a document whose aliases expand past the limit (a "billion laughs" file).
    if (!(error instanceof ReferenceError)) throw error;
    return {
      ok: false,
      issues: [
        {
          severity: "error",
          file,
          message: `the aliases (*name) in this file expand past the limit of ${maxAliasExpansions} (a file whose aliases nest can expand exponentially and exhaust memory). Write the values out, or use fewer aliases`,
        },
      ],
    };
  }
  return { ok: true, source: { value, lineOf } };
}

/** The yaml library's limit on resolved aliases (its default, made explicit); a file past it is refused. */
const maxAliasExpansions = 100;

function firstLine(message: string): string {
  return (message.split("\n")[0] ?? message).replace(/\s+at line \d+, column \d+:?$/, "").replace(/[.:]$/, "");
}
