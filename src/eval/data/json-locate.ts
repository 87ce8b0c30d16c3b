/**
 * Positions inside JSON text, for error messages and file order: where a syntax error is, on which line the value
 * at a path starts, and the keys of an object in the order they are written (JSON.parse puts integer-like keys
 * first). Values themselves always come from JSON.parse; this scanner only walks the text, once per file.
 */

class JsonSyntaxError extends Error {
  constructor(readonly offset: number) {
    super(`JSON syntax error at ${offset}`);
  }
}

interface Visitor {
  /** Called at the start of every value with its path; offsets only grow. */
  value?(path: readonly PropertyKey[], offset: number): void;
  /** Called with every object key and its path (the object's path plus the key). */
  key?(path: readonly PropertyKey[]): void;
}

function scan(text: string, visitor: Visitor): void {
  let position = 0;
  const fail = (): never => {
    throw new JsonSyntaxError(position);
  };
  const space = () => {
    while (position < text.length && " \t\n\r".includes(text[position]!)) position++;
  };
  const string = (): string => {
    const start = position;
    if (text[position] !== '"') fail();
    position++;
    while (position < text.length && text[position] !== '"') {
      if (text.charCodeAt(position) < 0x20) fail();
      position += text[position] === "\\" ? 2 : 1;
    }
    if (position >= text.length) fail();
    position++;
    try {
      return JSON.parse(text.slice(start, position)) as string;
    } catch {
      position = start;
      return fail();
    }
  };
  /** The items of an object or array after its opening bracket: `item(index)` each, separated by commas. */
  const items = (close: "}" | "]", item: (index: number) => void): void => {
    position++;
    space();
    if (text[position] === close) {
      position++;
      return;
    }
    for (let index = 0; ; index++) {
      item(index);
      space();
      if (text[position] === close) {
        position++;
        return;
      }
      if (text[position] !== ",") fail();
      position++;
    }
  };
  const value = (path: PropertyKey[]): void => {
    space();
    visitor.value?.(path, position);
    const first = text[position];
    if (first === "{") {
      items("}", () => {
        space();
        const key = string();
        visitor.key?.([...path, key]);
        space();
        if (text[position] !== ":") fail();
        position++;
        value([...path, key]);
      });
      return;
    }
    if (first === "[") {
      items("]", (index) => value([...path, index]));
      return;
    }
    if (first === '"') {
      string();
      return;
    }
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(
      text.slice(position, position + 400),
    );
    if (!literal) fail();
    position += literal![0].length;
  };
  value([]);
  space();
  if (position < text.length) fail();
}

/** 1-based line of a character offset. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let index = 0; index < offset && index < text.length; index++) if (text.charCodeAt(index) === 10) line++;
  return line;
}

/** Line of the first syntax error in `text`, or undefined when it is valid JSON. */
export function jsonSyntaxErrorLine(text: string): number | undefined {
  try {
    scan(text, {});
    return undefined;
  } catch (error) {
    if (error instanceof JsonSyntaxError) return lineAt(text, error.offset);
    throw error;
  }
}

export interface JsonLayout {
  /** Line on which the value at `path` starts, or that of the deepest existing part of the path. */
  line(path: readonly PropertyKey[]): number;
  /** Keys of the object at `path`, in the order they are written ([] when there is none). */
  keys(path: readonly PropertyKey[]): string[];
}

/** One pass over valid JSON text: the start line of every value and the written key order of every object. */
export function jsonLayout(text: string): JsonLayout {
  const lines = new Map<string, number>();
  const keys = new Map<string, string[]>();
  let line = 1;
  let counted = 0;
  scan(text, {
    value(at, offset) {
      for (; counted < offset; counted++) if (text.charCodeAt(counted) === 10) line++;
      lines.set(JSON.stringify(at), line);
    },
    key(at) {
      const parent = JSON.stringify(at.slice(0, -1));
      const list = keys.get(parent) ?? [];
      list.push(String(at[at.length - 1]));
      keys.set(parent, list);
    },
  });
  return {
    line(path) {
      for (let depth = path.length; depth >= 0; depth--) {
        const found = lines.get(JSON.stringify(path.slice(0, depth)));
        if (found !== undefined) return found;
      }
      return 1;
    },
    keys: (path) => keys.get(JSON.stringify(path)) ?? [],
  };
}
