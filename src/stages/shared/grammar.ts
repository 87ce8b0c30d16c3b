/**
 * The `grammar` sampling option of the generating stages: a GBNF grammar (a file, or the grammar text itself) that
 * constrains what the model writes, so a weak base model (or the demo's random one) still produces text in the
 * stage's format and every parser and filter downstream sees real traffic. Off by default.
 */
import { readFile } from "node:fs/promises";
import type { SamplingOptions } from "../../backends/language-model.js";
import { ConfigError } from "../../errors/index.js";
import type { StageContext } from "../../pipeline/stage-definition.js";

/** Grammar text as written (it holds a rule), or undefined when the value names a file. */
const isGrammarText = (value: string) => value.includes("::=");

/** The grammar text a `grammar` option names (read from its file, relative to the config). */
export async function loadGrammar(
  context: Pick<StageContext<unknown>, "resolvePath">,
  value: string | undefined,
  field = "grammar",
): Promise<string | undefined> {
  if (value === undefined) return undefined;
  if (isGrammarText(value)) return value;
  const path = context.resolvePath(value);
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError(
      `${field}: cannot read the grammar file (${error.code ?? error.message}); give a .gbnf file or the grammar text itself`,
      { path, field },
    );
  });
  if (!isGrammarText(text))
    throw new ConfigError(`${field}: ${path} holds no GBNF rule (name ::= ...)`, { path, field });
  return text;
}

/** Sampling options with their `grammar` file read into grammar text. */
export async function withGrammar<S extends SamplingOptions>(
  context: Pick<StageContext<unknown>, "resolvePath">,
  sampling: S,
  field = "sampling.grammar",
): Promise<S> {
  const grammar = await loadGrammar(context, sampling.grammar, field);
  return grammar === undefined ? sampling : { ...sampling, grammar };
}

/** A GBNF string literal of `text`. */
export function gbnfLiteral(text: string): string {
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

/**
 * Embed a grammar for one item of a list (its `root` renamed) in a grammar for the whole list: each of `prefixes` in
 * order, followed by one item and a newline. The stage knows the list's fixed parts (numbering, hints), the user's
 * grammar says what an item may be.
 */
export function listGrammar(itemGrammar: string, prefixes: readonly string[]): string {
  const renamed = itemGrammar.replace(/(^|[\s|(])root(?=\s*::=|[\s|)]|$)/gm, "$1item-root");
  const lines = prefixes.map((prefix) => `${gbnfLiteral(prefix)} item-root "\\n"`);
  return `root ::= ${lines.join(" ")}\n${renamed}`;
}
