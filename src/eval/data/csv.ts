/**
 * A small RFC 4180 CSV parser: quoted fields with embedded commas, newlines and doubled quotes, CRLF or LF line
 * ends, an optional UTF-8 byte-order mark. Every row remembers the 1-based line it starts on, for error messages.
 */
import { ConfigError } from "../../errors/index.js";

export interface CsvRow {
  /** 1-based line the row starts on. */
  line: number;
  fields: string[];
}

/** Parse CSV text into rows (blank lines are skipped). `path` names the file in errors. */
export function parseCsv(text: string, path: string): CsvRow[] {
  const rows: CsvRow[] = [];
  let position = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (position < text.length) {
    const rowLine = line;
    const fields: string[] = [];
    for (;;) {
      let field = "";
      if (text[position] === '"') {
        const fieldLine = line;
        position++;
        for (;;) {
          if (position >= text.length) {
            throw new ConfigError(
              `a quoted field opened on line ${fieldLine} is never closed; expected CSV (RFC 4180) where a quote ` +
                'inside a quoted field is written as two quotes ("")',
              { path, line: fieldLine, field: `column ${fields.length + 1}` },
            );
          }
          const character = text[position]!;
          if (character === '"') {
            if (text[position + 1] === '"') {
              field += '"';
              position += 2;
              continue;
            }
            position++;
            break;
          }
          if (character === "\n") line++;
          field += character;
          position++;
        }
        const next = text[position];
        if (next !== undefined && next !== "," && next !== "\n" && next !== "\r") {
          throw new ConfigError(
            `unexpected text after the closing quote of a field; expected a comma or the end of the line`,
            { path, line, field: `column ${fields.length + 1}` },
          );
        }
      } else {
        while (position < text.length && text[position] !== "," && text[position] !== "\n" && text[position] !== "\r") {
          field += text[position];
          position++;
        }
      }
      fields.push(field);
      if (text[position] === ",") {
        position++;
        continue;
      }
      if (text[position] === "\r") position++;
      if (text[position] === "\n") {
        position++;
        line++;
      }
      break;
    }
    if (!(fields.length === 1 && fields[0] === "")) rows.push({ line: rowLine, fields });
  }
  return rows;
}
