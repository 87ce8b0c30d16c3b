/**
 * `POST /v1/chat/completions` over `LanguageModel.chat`, with `n` and `stream`: content is streamed as the model
 * writes it (on backends that report progress), trimmed like the final message (leading whitespace dropped, trailing
 * whitespace held back until more text follows). The stream opens with the first content, so messages too long for
 * the context (or with `max_tokens` beyond it) get a 400 as in vLLM. Chat log-probabilities are not offered: a
 * request for them is a 400 rather than a reply with `logprobs: null`.
 */
import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { ChatMessage, TextProgress } from "../backends/language-model.js";
import { checkModelName, type RequestUsage, type ServeContext, samplingFrom, writeSse } from "./completions.js";
import { HttpError } from "./openai-error.js";
import { answeringContextLength } from "./request-limits.js";
import type { ChatCompletionsRequest } from "./request-schemas.js";

export async function handleChatCompletions(
  body: ChatCompletionsRequest,
  context: ServeContext,
  response: ServerResponse,
  signal: AbortSignal,
  counted: RequestUsage = {},
): Promise<void> {
  checkModelName(body.model, context);
  if (body.logprobs || (body.top_logprobs !== undefined && body.top_logprobs !== null)) {
    throw new HttpError(
      400,
      "this server gives no log-probabilities for chat replies; leave out `logprobs` and `top_logprobs`, or send the rendered prompt to /v1/completions with `logprobs`",
      { param: body.logprobs ? "logprobs" : "top_logprobs", code: "unsupported" },
    );
  }
  const messages: ChatMessage[] = body.messages.map((message) => ({
    // "developer" is OpenAI's newer name for the system role.
    role: message.role === "developer" ? "system" : message.role,
    content: typeof message.content === "string" ? message.content : message.content.map((part) => part.text).join(""),
  }));
  const requested = body.max_completion_tokens ?? body.max_tokens;
  const sampling = samplingFrom(body, requested ?? 256, requested !== undefined && requested !== null);
  const n = body.n ?? 1;
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = { id, created, model: context.modelName };
  const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  const stream = body.stream ?? false;
  const choices = [];
  for (let index = 0; index < n; index++) {
    // Distinct samples need distinct seeds when a seed is given.
    const seed = sampling.seed === undefined ? undefined : sampling.seed + index;
    const chunk = (delta: { role?: "assistant"; content?: string }, finishReason: "stop" | "length" | null = null) =>
      writeSse(response, {
        ...base,
        object: "chat.completion.chunk",
        choices: [{ index, delta, logprobs: null, finish_reason: finishReason }],
      });
    let sent = "";
    // The first chunk of a choice names the role; it goes out with the first content (or at the end).
    let opened = false;
    const open = () => {
      if (opened) return;
      opened = true;
      chunk({ role: "assistant", content: "" });
    };
    const onText = (progress: TextProgress) => {
      const settled = progress.text.trimStart().trimEnd();
      if (settled.length <= sent.length || !settled.startsWith(sent)) return;
      open();
      chunk({ content: settled.slice(sent.length) });
      sent = settled;
    };
    const result = await answeringContextLength("messages", () =>
      context.model.chat(messages, {
        ...sampling,
        seed,
        signal,
        onText: stream ? onText : undefined,
      }),
    );
    usage.prompt_tokens += index === 0 ? result.usage.promptTokens : 0;
    usage.completion_tokens += result.usage.completionTokens;
    counted.promptTokens = usage.prompt_tokens;
    counted.completionTokens = usage.completion_tokens;
    const finishReason = result.finishReason === "length" ? "length" : "stop";
    if (stream) {
      open();
      const content = result.message.content;
      const rest = content.startsWith(sent) ? content.slice(sent.length) : "";
      if (rest.length > 0) chunk({ content: rest });
      chunk({}, finishReason);
    } else {
      choices.push({
        index,
        message: { role: "assistant", content: result.message.content, refusal: null },
        logprobs: null,
        finish_reason: finishReason,
      });
    }
  }
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
  if (stream) {
    if (body.stream_options?.include_usage)
      writeSse(response, { ...base, object: "chat.completion.chunk", choices: [], usage });
    writeSse(response, "[DONE]");
    response.end();
    return;
  }
  const text = JSON.stringify({ ...base, object: "chat.completion", choices, usage });
  response.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
  response.end(text);
}
