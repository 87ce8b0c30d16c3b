/**
 * The response inside an OpenRLHF query. The query is tokenizer.decode(prompt tokens + response tokens) with special
 * tokens kept, so it holds BOS / EOS texts, may decode the prompt with small differences from the prompt string
 * (a space after "<s>", say), and has its prompt cut from the left when the prompt was too long for the rollout.
 * The prompt is found as a prefix, or else by its last characters; special-token texts are removed; a response
 * stopped when it ends with an end-of-turn token or holds one of the stop strings.
 */
import { GgufFile } from "../../gguf/index.js";

export interface SpecialTokens {
  /** Texts of every control token (BOS, EOS, chat markers, padding): removed from the response. */
  all: readonly string[];
  /** Texts of the tokens that end a turn (EOS, EOT, EOM): a response ending with one stopped. */
  end: readonly string[];
}

/** llama.cpp's token type of control tokens (`tokenizer.ggml.token_type`). */
const controlTokenType = 3;

/** The special tokens of a GGUF's vocabulary: its control tokens, and those its metadata names as turn ends. */
export async function readSpecialTokens(path: string): Promise<SpecialTokens> {
  const file = await GgufFile.open(path);
  try {
    const tokens = file.metadata["tokenizer.ggml.tokens"];
    const types = file.metadata["tokenizer.ggml.token_type"];
    if (tokens?.type !== "array") return { all: [], end: [] };
    const texts = tokens.value.map(String);
    const control = types?.type === "array" ? types.value.map(Number) : [];
    const all = texts.filter((text, id) => control[id] === controlTokenType && text !== "");
    const end = ["eos", "eot", "eom"]
      .map((name) => file.value(`tokenizer.ggml.${name}_token_id`))
      .filter((id) => id !== undefined)
      .map((id) => texts[Number(id)])
      .filter((text): text is string => text !== undefined && text !== "");
    return { all, end: [...new Set(end)] };
  } finally {
    await file.close();
  }
}

export interface ResponseOfQuery {
  /** The response, special-token texts removed (not otherwise cleaned). */
  response: string;
  /** It ended with an end-of-turn token, or holds a stop string. */
  stopped: boolean;
  /** How the prompt was found: as the query's prefix, or by its last characters (a cut or re-spaced prompt). */
  match: "prefix" | "tail";
}

function removeAll(text: string, strings: readonly string[]): string {
  let out = text;
  // Longest first, so "<|im_end|>" is not broken up by a shorter special text inside it.
  for (const special of [...strings].sort((a, b) => b.length - a.length)) out = out.split(special).join("");
  return out;
}

/** Lengths of the prompt's tail searched for when the query does not start with the prompt. */
const tailLengths = [256, 64, 16] as const;

/**
 * The response of `query` to `prompt`, or undefined when the prompt cannot be found in the query (it then does not
 * belong to this query, or was decoded beyond recognition).
 */
export function responseOfQuery(
  query: string,
  prompt: string,
  special: SpecialTokens,
  stopStrings: readonly string[] = [],
): ResponseOfQuery | undefined {
  const ended = special.end.some((token) => query.trimEnd().endsWith(token));
  const q = removeAll(query, special.all);
  const p = removeAll(prompt, special.all);
  let rest: string | undefined;
  let match: ResponseOfQuery["match"] = "prefix";
  if (q.startsWith(p)) rest = q.slice(p.length);
  else {
    match = "tail";
    const trimmed = p.trimEnd();
    // The longest tail first: its first occurrence is the prompt's end; a shorter one survives a left cut.
    for (const length of new Set(tailLengths.map((n) => Math.min(n, trimmed.length)))) {
      const tail = trimmed.slice(-length);
      const at = tail === "" ? -1 : q.indexOf(tail);
      if (at >= 0) {
        rest = q.slice(at + tail.length);
        break;
      }
    }
  }
  if (rest === undefined) return undefined;
  const stopped = ended || stopStrings.some((stop) => stop !== "" && rest.includes(stop));
  return { response: rest, stopped, match };
}
