/**
 * What kind of server is behind an OpenAI-compatible URL, and what follows from it: the context window it serves
 * and the request field that carries a grammar. Servers ignore fields they do not know (vLLM >= 0.12 answers a
 * `guided_grammar` request with unconstrained text), so sending the field each one reads is the only way a
 * grammar is honoured.
 *
 * Detection: `owned_by` of `GET /v1/models` ("vllm", "sglang", "llamacpp", "selfalign"; OpenAI's own models say
 * "openai"/"system"), then vLLM's `GET /version`. Context: `max_model_len` (vLLM, SGLang, `selfalign serve`),
 * `meta.n_ctx` (`selfalign serve`), llama.cpp server's per-slot `GET /props` `default_generation_settings.n_ctx`,
 * or as a last resort `meta.n_ctx_train`.
 */
import { BackendError } from "../../errors/index.js";
import type { HttpClient } from "./http-client.js";
import { parseModelsResponse, parsePropsContext, parseVersionResponse, type ServedModel } from "./response-shapes.js";

export const serverKinds = ["vllm", "sglang", "llama-cpp", "selfalign", "openai", "other"] as const;
export type ServerKind = (typeof serverKinds)[number];

export interface ServerInfo {
  kind: ServerKind;
  /** vLLM's version (`GET /version`), when it answered. */
  version?: string;
  /** Context window of the served model, when the server says. */
  contextSize?: number;
  /** Where `contextSize` came from, for messages. */
  contextSource?: string;
}

function kindFromOwner(ownedBy: string | undefined): ServerKind {
  switch (ownedBy?.toLowerCase()) {
    case "vllm":
      return "vllm";
    case "sglang":
      return "sglang";
    case "llamacpp":
    case "llama.cpp":
      return "llama-cpp";
    case "selfalign":
      return "selfalign";
    case "openai":
    case "system":
    case "openai-internal":
      return "openai";
    default:
      return "other";
  }
}

/** Whether a non-retryable status means "this endpoint does not exist here" (so: skip it, not fail). */
function isMissingEndpoint(error: unknown): boolean {
  return error instanceof BackendError && !error.retryable && [400, 404, 405, 501].includes(error.statusCode ?? 0);
}

async function optional<T>(request: () => Promise<T>): Promise<T | undefined> {
  try {
    return await request();
  } catch (error) {
    if (isMissingEndpoint(error)) return undefined;
    throw error;
  }
}

/** Ask the server what it is. `kind` from the config skips the guess (its version and context are still read). */
export async function detectServerInfo(
  client: HttpClient,
  model: string,
  configured: ServerKind | undefined,
): Promise<ServerInfo> {
  const models = await optional(() => client.request({ path: "/models", method: "GET", parse: parseModelsResponse }));
  const entry: ServedModel | undefined =
    models?.find((m) => m.id === model) ?? (models?.length === 1 ? models[0] : undefined);
  const kind = configured ?? kindFromOwner(entry?.ownedBy);
  const info: ServerInfo = { kind };
  if (kind === "vllm") {
    const version = await optional(() =>
      client.request({ path: "/version", method: "GET", root: true, parse: parseVersionResponse }),
    );
    if (version !== undefined) info.version = version;
  }
  if (entry?.maxModelLen !== undefined) {
    info.contextSize = entry.maxModelLen;
    info.contextSource = "max_model_len of /v1/models";
  } else if (entry?.metaContext !== undefined) {
    info.contextSize = entry.metaContext;
    info.contextSource = "meta.n_ctx of /v1/models";
  } else if (kind === "llama-cpp" || entry?.metaTrainContext !== undefined) {
    const props = await optional(() =>
      client.request({ path: "/props", method: "GET", root: true, parse: parsePropsContext }),
    );
    if (props !== undefined) {
      info.contextSize = props;
      info.contextSource = "default_generation_settings.n_ctx of /props";
    } else if (entry?.metaTrainContext !== undefined) {
      info.contextSize = entry.metaTrainContext;
      info.contextSource = "meta.n_ctx_train of /v1/models";
    }
  }
  return info;
}

/** `0.11.2` >= `0.12`? Unparseable versions count as current. */
function atLeast(version: string | undefined, major: number, minor: number): boolean {
  const match = version ? /^(\d+)\.(\d+)/.exec(version) : null;
  if (!match) return true;
  const [a, b] = [Number(match[1]), Number(match[2])];
  return a > major || (a === major && b >= minor);
}

/**
 * Request fields carrying a GBNF grammar for this server: vLLM >= 0.12 `structured_outputs.grammar` (0.12 removed
 * the `guided_*` fields; older versions read `guided_grammar`), SGLang `ebnf`, llama.cpp server and
 * `selfalign serve` `grammar`. Unknown servers get `grammar` and `guided_grammar`, and `honoured` is false.
 */
export function grammarFields(info: ServerInfo, grammar: string): { body: Record<string, unknown>; honoured: boolean } {
  switch (info.kind) {
    case "vllm":
      return atLeast(info.version, 0, 12)
        ? { body: { structured_outputs: { grammar } }, honoured: true }
        : { body: { guided_grammar: grammar }, honoured: true };
    case "sglang":
      return { body: { ebnf: grammar }, honoured: true };
    case "llama-cpp":
    case "selfalign":
      return { body: { grammar }, honoured: true };
    case "openai":
      return { body: {}, honoured: false };
    default:
      return { body: { grammar, guided_grammar: grammar }, honoured: false };
  }
}
