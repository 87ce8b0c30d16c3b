/** Errors in the OpenAI API's shape: `{ error: { message, type, param, code } }` with a matching HTTP status. */
import type { ServerResponse } from "node:http";
import type { z } from "zod";

export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    fields: { type?: string; param?: string | null; code?: string | null; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.status = status;
    this.type = fields.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = fields.param ?? null;
    this.code = fields.code ?? null;
    this.headers = fields.headers ?? {};
  }

  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 naming the first invalid field of a request body, as OpenAI does (`param`). */
export function invalidRequest(error: z.ZodError): HttpError {
  const issue = error.issues[0];
  const param = issue && issue.path.length > 0 ? issue.path.map(String).join(".") : null;
  const message = issue
    ? `${param ? `'${param}': ` : ""}${issue.message}`
    : "the request body does not match the expected schema";
  return new HttpError(400, message, { param, code: "invalid_value" });
}

export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  response.end(text);
}

export function sendError(response: ServerResponse, error: HttpError): void {
  sendJson(response, error.status, error.toJSON(), error.headers);
}
