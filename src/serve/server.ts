/**
 * `selfalign serve`: an OpenAI-compatible HTTP server over a LanguageModel (the embedded engine). Bound to
 * 127.0.0.1 by default; optional bearer token; request-size and concurrency limits; every error in OpenAI's shape.
 * Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, POST /tokenize, POST /detokenize
 * (llama.cpp server style; also under /v1), GET /health.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { z } from "zod";
import type { LanguageModel } from "../backends/language-model.js";
import { AbortedError, CapabilityError, ConfigError, ContextLengthError, isSelfalignError } from "../errors/index.js";
import { handleChatCompletions } from "./chat-completions.js";
import { handleCompletions, type RequestUsage, type ServeContext } from "./completions.js";
import { HttpError, invalidRequest, sendError, sendJson } from "./openai-error.js";
import { checkRequestTokenIds, contextLengthHttpError } from "./request-limits.js";
import {
  chatCompletionsRequestSchema,
  completionsRequestSchema,
  detokenizeRequestSchema,
  tokenizeRequestSchema,
} from "./request-schemas.js";

export interface StartServerOptions {
  model: LanguageModel;
  /** Interface to listen on. Default 127.0.0.1 (local only); use 0.0.0.0 deliberately, with an API key. */
  host?: string;
  /** Port; 0 picks a free one. Default 8000. */
  port?: number;
  /** Bearer token every request except GET /health must carry. Default: none. */
  apiKey?: string;
  /** The model id clients send and `/v1/models` lists. */
  modelName: string;
  /** Largest request body accepted (413 beyond). Default 1 MiB. */
  maxBodyBytes?: number;
  /** Model requests handled at once (429 with retry-after beyond). Default 16. */
  maxConcurrent?: number;
  /** Called once per request when its answer is over (sent, or cut short by the client): for an access log. */
  onRequest?: (entry: ServedRequest) => void;
}

/** One request as an access log sees it. */
export interface ServedRequest {
  method: string;
  /** The path, without the query string. */
  path: string;
  /** The HTTP status sent. */
  status: number;
  /** Tokens of the prompts and of the text generated, for requests that reached the model. */
  promptTokens?: number;
  completionTokens?: number;
  /** From the request's arrival to the end of its answer. */
  ms: number;
  /** The client went away before the answer was complete. */
  aborted: boolean;
}

/** The access-log line of a request: method, path, status, tokens, milliseconds. */
export function formatServedRequest(entry: ServedRequest): string {
  const tokens =
    entry.promptTokens === undefined
      ? ""
      : ` prompt_tokens=${entry.promptTokens} completion_tokens=${entry.completionTokens ?? 0}`;
  return `${entry.method} ${entry.path} ${entry.status}${tokens} ${Math.round(entry.ms)}ms${entry.aborted ? " (client went away)" : ""}`;
}

export interface StartServerResult {
  /** Base URL of the OpenAI API, e.g. `http://127.0.0.1:8000/v1`. */
  url: string;
  /** Port actually bound (useful with port 0). */
  port: number;
  /** Stop accepting connections, abort requests in flight and wait for the server to close. */
  close(): Promise<void>;
}

function pathOf(request: IncomingMessage): string {
  return (request.url ?? "/").split("?")[0]!.replace(/\/+$/, "") || "/";
}

function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** Read the body up to `limit` bytes; beyond it, a 413 (the rest is drained, not stored). */
function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () =>
    new HttpError(413, `request body is larger than the server's limit of ${limit} bytes; send a smaller request`, {
      code: "request_too_large",
      headers: { connection: "close" },
    });
  const declared = Number(request.headers["content-length"]);
  return new Promise((resolve, reject) => {
    if (Number.isFinite(declared) && declared > limit) {
      request.resume();
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (over) return;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    request.on("error", (error) => reject(error));
  });
}

function parseJsonBody<S extends z.ZodType>(raw: Buffer, schema: S): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString("utf8"));
  } catch (error) {
    throw new HttpError(
      400,
      `We could not parse the JSON body of your request (${(error as Error).message}); send a JSON object with Content-Type: application/json`,
      { code: "invalid_json" },
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new HttpError(400, "the request body must be a JSON object", { code: "invalid_json" });
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw invalidRequest(parsed.error);
  return parsed.data;
}

/** Maps an error thrown while handling a request to the HTTP error the client sees. */
function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof ContextLengthError) return contextLengthHttpError(error, "prompt");
  if (error instanceof CapabilityError || error instanceof ConfigError)
    return new HttpError(400, error.message, { code: "unsupported" });
  if (isSelfalignError(error)) return new HttpError(500, error.message, { code: "backend_error" });
  return new HttpError(500, `internal error: ${(error as Error)?.message ?? String(error)}`);
}

export async function startServer(options: StartServerOptions): Promise<StartServerResult> {
  const host = options.host ?? "127.0.0.1";
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const maxConcurrent = options.maxConcurrent ?? 16;
  const context: ServeContext = { model: options.model, modelName: options.modelName };
  const inFlight = new Set<AbortController>();
  let active = 0;

  const route = async (
    request: IncomingMessage,
    response: ServerResponse,
    signal: AbortSignal,
    usage: RequestUsage,
  ): Promise<void> => {
    const path = pathOf(request);
    const method = request.method ?? "GET";
    if (path === "/health" && method === "GET") return sendJson(response, 200, { status: "ok" });

    if (options.apiKey !== undefined) {
      const header = request.headers.authorization ?? "";
      const token = header.startsWith("Bearer ") ? header.slice("Bearer ".length).trim() : "";
      if (!token || !sameSecret(token, options.apiKey)) {
        throw new HttpError(
          401,
          token
            ? "Incorrect API key provided."
            : "You didn't provide an API key. Send it as an Authorization: Bearer <key> header.",
          { code: "invalid_api_key", headers: { "www-authenticate": "Bearer" } },
        );
      }
    }

    const routes: Record<string, { method: string; run: () => Promise<void> }> = {
      "/v1/models": {
        method: "GET",
        run: async () =>
          sendJson(response, 200, {
            object: "list",
            data: [
              {
                id: context.modelName,
                object: "model",
                created: 0,
                owned_by: "selfalign",
                // The context window in vLLM's name and in llama.cpp server's (`meta`), so clients of either read it.
                max_model_len: context.model.capabilities().maxContext,
                meta: { n_ctx: context.model.capabilities().maxContext },
              },
            ],
          }),
      },
      "/v1/completions": {
        method: "POST",
        run: async () => {
          const body = parseJsonBody(await readBody(request, maxBodyBytes), completionsRequestSchema);
          await limited(() => handleCompletions(body, context, response, signal, usage));
        },
      },
      "/v1/chat/completions": {
        method: "POST",
        run: async () => {
          const body = parseJsonBody(await readBody(request, maxBodyBytes), chatCompletionsRequestSchema);
          await limited(() => handleChatCompletions(body, context, response, signal, usage));
        },
      },
      "/tokenize": {
        method: "POST",
        run: async () => {
          const body = parseJsonBody(await readBody(request, maxBodyBytes), tokenizeRequestSchema);
          const tokens = await context.model.tokenize(body.content ?? body.prompt ?? "", {
            addBos: body.add_special ?? body.add_special_tokens ?? false,
          });
          sendJson(response, 200, { tokens, count: tokens.length });
        },
      },
      "/detokenize": {
        method: "POST",
        run: async () => {
          const body = parseJsonBody(await readBody(request, maxBodyBytes), detokenizeRequestSchema);
          checkRequestTokenIds(context.model, body.tokens, "tokens");
          const content = await context.model.detokenize(body.tokens);
          sendJson(response, 200, { content, prompt: content });
        },
      },
    };
    routes["/v1/tokenize"] = routes["/tokenize"]!;
    routes["/v1/detokenize"] = routes["/detokenize"]!;
    const found = routes[path];
    if (!found) {
      throw new HttpError(404, `Unknown route ${method} ${path}; see GET /v1/models, POST /v1/completions`, {
        code: "not_found",
      });
    }
    if (found.method !== method) {
      throw new HttpError(405, `${path} expects ${found.method}, got ${method}`, {
        code: "method_not_allowed",
        headers: { allow: found.method },
      });
    }
    await found.run();
  };

  const limited = async (run: () => Promise<void>): Promise<void> => {
    if (active >= maxConcurrent) {
      throw new HttpError(429, `the server is busy (${maxConcurrent} requests in flight); retry shortly`, {
        type: "rate_limit_error",
        code: "rate_limit_exceeded",
        headers: { "retry-after": "1" },
      });
    }
    active++;
    try {
      await run();
    } finally {
      active--;
    }
  };

  const server = createServer((request, response) => {
    const started = performance.now();
    const controller = new AbortController();
    const usage: RequestUsage = {};
    inFlight.add(controller);
    // The client went away before the answer was complete: stop generating for it.
    response.on("close", () => {
      const aborted = !response.writableFinished;
      if (aborted) controller.abort();
      inFlight.delete(controller);
      options.onRequest?.({
        method: request.method ?? "GET",
        path: pathOf(request),
        status: response.statusCode,
        ...usage,
        ms: performance.now() - started,
        aborted,
      });
    });
    route(request, response, controller.signal, usage).catch((error: unknown) => {
      if (controller.signal.aborted && error instanceof AbortedError) return;
      const httpError = toHttpError(error);
      if (response.headersSent) {
        // Mid-stream: report in the stream, then end it.
        if (!response.writableEnded) {
          response.write(`data: ${JSON.stringify(httpError.toJSON())}\n\n`);
          response.end();
        }
        return;
      }
      sendError(response, httpError);
    });
  });
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "EADDRINUSE"
          ? new ConfigError(`port ${options.port ?? 8000} on ${host} is already in use; pick another with --port`, {
              field: "port",
              cause: error,
            })
          : error,
      ),
    );
    server.listen(options.port ?? 8000, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/v1`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const controller of inFlight) controller.abort();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
