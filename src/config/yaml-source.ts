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
  return { ok: true, source: { value: doc.toJS(), lineOf } };
}

function firstLine(message: string): string {
  return (message.split("\n")[0] ?? message).replace(/\s+at line \d+, column \d+:?$/, "").replace(/[.:]$/, "");
}
