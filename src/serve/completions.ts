/**
 * `POST /v1/completions` over a LanguageModel: prompts as a string, strings or token ids; `n`, `stop`,
 * `max_tokens` (0 with `echo` scores the prompt without generating), `echo`, `logprobs`, and `stream` (SSE).
 * A stream sends text as the model produces it (on backends that report progress, see `CompleteOptions.onText`),
 * then each choice's last chunk with its finish reason, then `[DONE]`. With `logprobs`, which are computed after
 * generation, each choice comes as one chunk when it is done. The stream opens with its first chunk, so a request
 * the model refuses (too long for the context, a bad grammar) is still answered with a 4xx.
 *
 * `max_tokens` beyond what the context leaves after the prompt is a 400, as in vLLM; without `max_tokens`, the
 * default (16) is capped to what fits. Log-probabilities of generated text are those of the tokens generated.
 */
import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type {
  CompletionRequest,
  LanguageModel,
  SamplingOptions,
  ScoreResult,
  TextProgress,
} from "../backends/language-model.js";
import { codePointLength } from "../backends/openai-compatible/echo-score.js";
import { HttpError } from "./openai-error.js";
import { answeringContextLength, checkRequestTokenIds } from "./request-limits.js";
import type { ChatCompletionsRequest, CompletionsRequest } from "./request-schemas.js";
import { concatLogprobs, emptyLogprobs, logprobsOf, type OpenAILogprobs } from "./token-logprobs.js";

export interface ServeContext {
  model: LanguageModel;
  modelName: string;
}

/** Tokens a request has used so far, for the access log (filled in as results arrive). */
export interface RequestUsage {
  promptTokens?: number;
  completionTokens?: number;
}

interface CompletionChoice {
  index: number;
  text: string;
  logprobs: OpenAILogprobs | null;
  finish_reason: "stop" | "length";
}

/**
 * Sampling options from the OpenAI field names (shared with chat completions). `explicitMaxTokens` says the client
 * chose `maxTokens`: then a prompt that leaves less room is refused rather than capped.
 */
export function samplingFrom(
  body: CompletionsRequest | ChatCompletionsRequest,
  maxTokens: number,
  explicitMaxTokens: boolean,
): SamplingOptions {
  const sampling: SamplingOptions = {
    maxTokens,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    maxTokensOverflow: explicitMaxTokens ? "refuse" : "cap",
  };
  if (body.stop && body.stop.length > 0) sampling.stop = body.stop;
  if (body.seed !== undefined && body.seed !== null) sampling.seed = body.seed;
  if (body.top_k && body.top_k > 0) sampling.topK = body.top_k;
  if (body.logit_bias) {
    sampling.logitBias = Object.fromEntries(Object.entries(body.logit_bias).map(([id, bias]) => [Number(id), bias]));
  }
  if (body.frequency_penalty) sampling.frequencyPenalty = body.frequency_penalty;
  if (body.presence_penalty) sampling.presencePenalty = body.presence_penalty;
  if (body.ignore_eos) sampling.allowEos = false;
  const grammar = body.grammar ?? body.structured_outputs?.grammar ?? body.guided_grammar ?? body.ebnf;
  if (grammar) sampling.grammar = grammar;
  return sampling;
}

export function checkModelName(requested: string | undefined, context: ServeContext): void {
  if (requested !== undefined && requested !== context.modelName) {
    throw new HttpError(404, `The model '${requested}' does not exist; this server serves '${context.modelName}'`, {
      param: "model",
      code: "model_not_found",
    });
  }
}

/** Token-id prompts are checked against the vocabulary and the context before they are turned into text. */
async function promptTexts(body: CompletionsRequest, model: LanguageModel): Promise<string[]> {
  const prompt = body.prompt;
  if (typeof prompt === "string") return [prompt];
  if (prompt.every((item): item is string => typeof item === "string")) return prompt;
  const lists = prompt.every((item): item is number => typeof item === "number") ? [prompt] : (prompt as number[][]);
  const { maxContext } = model.capabilities();
  for (const ids of lists) {
    checkRequestTokenIds(model, ids, "prompt");
    if (ids.length >= maxContext)
      throw new HttpError(
        400,
        `This model's maximum context length is ${maxContext} tokens, but your request has ${ids.length} input tokens; shorten the prompt`,
        { param: "prompt", code: "context_length_exceeded" },
      );
  }
  return Promise.all(lists.map((ids) => model.detokenize(ids)));
}

/**
 * Write one server-sent event, opening the stream first if this is its first event. The stream opens with its
 * first event, not before the model starts: a request the model refuses at once still gets its 4xx status.
 */
export function writeSse(response: ServerResponse, data: unknown): void {
  if (!response.headersSent) {
    response.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
  }
  response.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
}

export async function handleCompletions(
  body: CompletionsRequest,
  context: ServeContext,
  response: ServerResponse,
  signal: AbortSignal,
  counted: RequestUsage = {},
): Promise<void> {
  checkModelName(body.model, context);
  const { model } = context;
  const wantLogprobs = body.logprobs !== undefined && body.logprobs !== null;
  const topLogprobs = body.logprobs ?? 0;
  if (wantLogprobs && !model.capabilities().score) {
    throw new HttpError(400, "this model cannot give log-probabilities; leave out `logprobs`", { param: "logprobs" });
  }
  const echo = body.echo ?? false;
  const n = body.n ?? 1;
  const explicitMaxTokens = body.max_tokens !== undefined && body.max_tokens !== null;
  const maxTokens = body.max_tokens ?? 16;
  const tokenIds = body.return_tokens_as_token_ids ?? false;
  const prompts = await promptTexts(body, model);
  const sampling = samplingFrom(body, maxTokens, explicitMaxTokens);
  const id = `cmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  const choices: CompletionChoice[] = [];
  const stream = body.stream ?? false;
  // Streamed text per choice index (without an echoed prompt), and choices whose echoed prompt was sent.
  const streamed = new Map<number, string>();
  const echoed = new Set<number>();
  const chunk = (choice: CompletionChoice | (Omit<CompletionChoice, "finish_reason"> & { finish_reason: null })) =>
    writeSse(response, { id, object: "text_completion", created, model: context.modelName, choices: [choice] });
  const onText = (progress: TextProgress) => {
    const index = progress.index * n + progress.sample;
    const sent = streamed.get(index) ?? "";
    if (progress.text.length <= sent.length || !progress.text.startsWith(sent)) return;
    const prefix = echo && !echoed.has(index) ? prompts[progress.index]! : "";
    echoed.add(index);
    streamed.set(index, progress.text);
    chunk({ index, text: prefix + progress.text.slice(sent.length), logprobs: null, finish_reason: null });
  };

  const finishPrompt = async (
    promptIndex: number,
    completions: Array<{ text: string; finishReason: string; tokens?: number[] }>,
  ): Promise<void> => {
    const prompt = prompts[promptIndex]!;
    let promptPart: OpenAILogprobs | null = null;
    let generated: OpenAILogprobs[] = completions.map(() => emptyLogprobs());
    if (wantLogprobs) {
      if (echo) {
        const [score] = await model.score("", [prompt], { signal, topLogprobs });
        promptPart = await logprobsOf(model, score!, prompt, { base: 0, firstIsNull: true, tokenIds });
      }
      const scored = await scoreGenerated(model, prompt, completions, { signal, topLogprobs });
      const base = echo ? codePointLength(prompt) : 0;
      generated = await Promise.all(
        completions.map((completion, i) =>
          scored[i] && scored[i]!.tokens.length > 0
            ? logprobsOf(model, scored[i]!, completion.text, { base, firstIsNull: false, tokenIds })
            : emptyLogprobs(),
        ),
      );
    }
    completions.forEach((completion, i) => {
      const index = promptIndex * n + i;
      // What streaming already sent is a prefix of the final text; send the rest.
      const sent = streamed.get(index) ?? "";
      const rest = completion.text.startsWith(sent) ? completion.text.slice(sent.length) : "";
      const choice: CompletionChoice = {
        index,
        text: (echo && !echoed.has(index) ? prompt : "") + rest,
        logprobs: wantLogprobs ? (promptPart ? concatLogprobs(promptPart, generated[i]!) : generated[i]!) : null,
        finish_reason: completion.finishReason === "length" ? "length" : "stop",
      };
      if (stream) chunk(choice);
      else choices.push(choice);
    });
  };

  if (maxTokens === 0) {
    const { maxContext } = model.capabilities();
    // All prompts at once: the embedded engine scores calls made together in shared decodes.
    const counts = await Promise.all(prompts.map((prompt) => model.countTokens(prompt)));
    counts.forEach((count) => {
      // With the BOS token the scoring context reads, the prompt must fit.
      if (count >= maxContext)
        throw new HttpError(
          400,
          `This model's maximum context length is ${maxContext} tokens, but your request has ${count} input tokens; shorten the prompt`,
          { param: "prompt", code: "context_length_exceeded" },
        );
    });
    usage.prompt_tokens += counts.reduce((sum, count) => sum + count, 0);
    counted.promptTokens = usage.prompt_tokens;
    await Promise.all(
      prompts.map((_, i) =>
        finishPrompt(
          i,
          Array.from({ length: n }, () => ({ text: "", finishReason: "length" })),
        ),
      ),
    );
  } else {
    const requests: CompletionRequest[] = prompts.map((prompt) => ({ ...sampling, prompt, n }));
    const streamText = stream && !wantLogprobs ? onText : undefined;
    await answeringContextLength("prompt", async () => {
      for await (const result of model.complete(requests, { signal, onText: streamText })) {
        usage.prompt_tokens += result.usage.promptTokens;
        usage.completion_tokens += result.usage.completionTokens;
        counted.promptTokens = usage.prompt_tokens;
        counted.completionTokens = usage.completion_tokens;
        await finishPrompt(result.index, result.completions);
      }
    });
  }
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;

  if (stream) {
    if (body.stream_options?.include_usage) {
      writeSse(response, { id, object: "text_completion", created, model: context.modelName, choices: [], usage });
    }
    writeSse(response, "[DONE]");
    response.end();
    return;
  }
  choices.sort((a, b) => a.index - b.index);
  const payload = { id, object: "text_completion", created, model: context.modelName, choices, usage };
  const text = JSON.stringify(payload);
  response.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
  response.end(text);
}

/**
 * Score what each completion generated. With the token ids (`Completion.tokens`) and a model that scores ids, the
 * tokens scored are the tokens generated, after the prompt as generation read it; otherwise (a model behind HTTP)
 * the text is scored after the prompt, tokenised again.
 */
async function scoreGenerated(
  model: LanguageModel,
  prompt: string,
  completions: Array<{ text: string; tokens?: number[] }>,
  options: { signal: AbortSignal; topLogprobs: number },
): Promise<ScoreResult[]> {
  if (model.scoreTokens && completions.every((completion) => completion.tokens !== undefined)) {
    const context = await model.tokenize(prompt, { addBos: true });
    return model.scoreTokens(
      context,
      completions.map((completion) => completion.tokens!),
      options,
    );
  }
  const texts = completions.map((completion) => completion.text);
  if (!texts.some((text) => text.length > 0)) return [];
  return model.score(prompt, texts, options);
}
