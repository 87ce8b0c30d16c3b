/**
 * The `grammar` stage option: a GBNF grammar every completion of the stage must match, given as the grammar text or
 * as the path of a file holding it. Off by default. It lets a weak (or random-weight) model produce output the
 * stage's parser can read, through the same mechanism the pipeline uses everywhere (the backend's `grammar`).
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";

export const grammarOptionSchema = z
  .string()
  .min(1)
  .optional()
  .describe("GBNF grammar the outputs must match: the grammar text, or a file path (default none)");

/** Grammar text contains a rule definition; anything else is a file name. */
const isGrammarText = (value: string) => value.includes("::=");

/**
 * The grammar text of the option (`value` read from a file when it names one, resolved by `resolvePath`), or
 * undefined when the option is unset. `field` names the option in errors, e.g. "stages.isheep.isheep-rate.grammar".
 */
export async function loadGrammarOption(
  value: string | undefined,
  options: { field: string; resolvePath?: (path: string) => string },
): Promise<string | undefined> {
  if (value === undefined) return undefined;
  if (isGrammarText(value)) return value;
  const path = options.resolvePath ? options.resolvePath(value) : value;
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError(
      `${options.field}: no grammar file ${path} (${error.code ?? error.message}). Give a GBNF file path or the grammar text itself (a "root ::= ..." rule)`,
      { path, field: options.field },
    );
  });
  if (!isGrammarText(text)) {
    throw new ConfigError(`${options.field}: ${path} holds no GBNF rule ("name ::= ..."); expected a grammar file`, {
      path,
      field: options.field,
    });
  }
  return text;
}

/** `{ grammar }` to spread into a request's sampling options, or nothing. */
export const withGrammar = (grammar: string | undefined): { grammar?: string } =>
  grammar === undefined ? {} : { grammar };
