/**
 * `POST /v1/chat/completions` over `LanguageModel.chat`, with `n` and `stream`: content is streamed as the model
 * writes it (on backends that report progress), trimmed like the final message (leading whitespace dropped, trailing
 * whitespace held back until more text follows).
 */
import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { ChatMessage, TextProgress } from "../backends/language-model.js";
import { checkModelName, type ServeContext, samplingFrom, startSse, writeSse } from "./completions.js";
import type { ChatCompletionsRequest } from "./request-schemas.js";

export async function handleChatCompletions(
  body: ChatCompletionsRequest,
  context: ServeContext,
  response: ServerResponse,
  signal: AbortSignal,
): Promise<void> {
  checkModelName(body.model, context);
  const messages: ChatMessage[] = body.messages.map((message) => ({
    // "developer" is OpenAI's newer name for the system role.
    role: message.role === "developer" ? "system" : message.role,
    content: typeof message.content === "string" ? message.content : message.content.map((part) => part.text).join(""),
  }));
  const sampling = samplingFrom(body, body.max_completion_tokens ?? body.max_tokens ?? 256);
  const n = body.n ?? 1;
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = { id, created, model: context.modelName };
  const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  const stream = body.stream ?? false;
  if (stream) startSse(response);
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
    const onText = (progress: TextProgress) => {
      const settled = progress.text.trimStart().trimEnd();
      if (settled.length <= sent.length || !settled.startsWith(sent)) return;
      chunk({ content: settled.slice(sent.length) });
      sent = settled;
    };
    if (stream) chunk({ role: "assistant", content: "" });
    const result = await context.model.chat(messages, {
      ...sampling,
      seed,
      signal,
      onText: stream ? onText : undefined,
    });
    usage.prompt_tokens += index === 0 ? result.usage.promptTokens : 0;
    usage.completion_tokens += result.usage.completionTokens;
    const finishReason = result.finishReason === "length" ? "length" : "stop";
    if (stream) {
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
