/**
 * Positions inside JSON text, for error messages and file order: where a syntax error is, on which line the value
 * at a path starts, and the keys of an object in the order they are written (JSON.parse puts integer-like keys
 * first). Values themselves always come from JSON.parse; this scanner only walks the text.
 */

class JsonSyntaxError extends Error {
  constructor(readonly offset: number) {
    super(`JSON syntax error at ${offset}`);
  }
}

interface Visitor {
  /** Called at the start of every value with its path; return true to stop scanning. */
  value(path: readonly PropertyKey[], offset: number): boolean;
  /** Called with every object key and its path (the object's path plus the key). */
  key?(path: readonly PropertyKey[]): void;
}

class Stop extends Error {}

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
  const value = (path: PropertyKey[]): void => {
    space();
    if (visitor.value(path, position)) throw new Stop();
    const first = text[position];
    if (first === "{") {
      position++;
      space();
      if (text[position] === "}") {
        position++;
        return;
      }
      for (;;) {
        space();
        const key = string();
        visitor.key?.([...path, key]);
        space();
        if (text[position] !== ":") fail();
        position++;
        value([...path, key]);
        space();
        if (text[position] === ",") {
          position++;
          continue;
        }
        if (text[position] === "}") {
          position++;
          return;
        }
        fail();
      }
    }
    if (first === "[") {
      position++;
      space();
      if (text[position] === "]") {
        position++;
        return;
      }
      for (let index = 0; ; index++) {
        value([...path, index]);
        space();
        if (text[position] === ",") {
          position++;
          continue;
        }
        if (text[position] === "]") {
          position++;
          return;
        }
        fail();
      }
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
  try {
    value([]);
    space();
    if (position < text.length) fail();
  } catch (error) {
    if (!(error instanceof Stop)) throw error;
  }
}

/** 1-based line of a character offset. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let index = 0; index < offset && index < text.length; index++) if (text.charCodeAt(index) === 10) line++;
  return line;
}

/** Line of the first syntax error in `text`, or undefined when it is valid JSON. */
export function jsonSyntaxErrorLine(text: string): number | undefined {
  try {
    scan(text, { value: () => false });
    return undefined;
  } catch (error) {
    if (error instanceof JsonSyntaxError) return lineAt(text, error.offset);
    throw error;
  }
}

function samePath(a: readonly PropertyKey[], b: readonly PropertyKey[]): boolean {
  return a.length === b.length && a.every((part, index) => part === b[index]);
}

function isPrefix(prefix: readonly PropertyKey[], path: readonly PropertyKey[]): boolean {
  return prefix.length <= path.length && prefix.every((part, index) => part === path[index]);
}

/** Line on which the value at `path` starts, or that of the deepest existing part of the path. */
export function lineOfJsonPath(text: string, path: readonly PropertyKey[]): number {
  let best = 0;
  let bestDepth = -1;
  try {
    scan(text, {
      value(at, offset) {
        if (isPrefix(at, path) && at.length > bestDepth) {
          best = offset;
          bestDepth = at.length;
        }
        return samePath(at, path);
      },
    });
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) throw error;
  }
  return lineAt(text, best);
}

/** One pass over `text`; returns the keys of the object at a path, in the order they are written. */
export function jsonKeyOrder(text: string): (path: readonly PropertyKey[]) => string[] {
  const keys = new Map<string, string[]>();
  scan(text, {
    value: () => false,
    key(at) {
      const parent = JSON.stringify(at.slice(0, -1));
      const list = keys.get(parent) ?? [];
      list.push(String(at[at.length - 1]));
      keys.set(parent, list);
    },
  });
  return (path) => keys.get(JSON.stringify(path)) ?? [];
}
