/**
 * Request bodies `selfalign serve` accepts, in the OpenAI API's field names. Unknown fields are ignored (as
 * servers commonly do); known fields with wrong values are a 400 naming the field. Extensions understood by vLLM
 * and llama.cpp server are accepted too: `top_k`, `ignore_eos`, a GBNF grammar as `grammar` (llama.cpp),
 * `structured_outputs.grammar` (vLLM >= 0.12), `guided_grammar` (older vLLM) or `ebnf` (SGLang), and
 * `return_tokens_as_token_ids`.
 */
import { z } from "zod";

const stopSchema = z
  .union([z.string(), z.array(z.string()).max(16)])
  .nullish()
  .transform((stop) => (stop === null || stop === undefined ? undefined : typeof stop === "string" ? [stop] : stop));

const tokenIds = z.array(z.number().int().nonnegative());

/** Sampling fields shared by completions and chat completions. */
const samplingFields = {
  model: z.string().optional(),
  n: z.number().int().min(1).max(128).nullish(),
  stop: stopSchema,
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(-1).nullish(), // -1 (vLLM) and 0 (llama.cpp) both mean "no top-k"
  seed: z.number().int().nullish(),
  logit_bias: z.record(z.string().regex(/^\d+$/, "keys must be token ids"), z.number().min(-100).max(100)).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  ignore_eos: z.boolean().nullish(),
  grammar: z.string().nullish(),
  guided_grammar: z.string().nullish(),
  structured_outputs: z.object({ grammar: z.string().nullish() }).nullish(),
  ebnf: z.string().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
};

export const completionsRequestSchema = z.object({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds.min(1), z.array(tokenIds.min(1)).min(1)]),
  max_tokens: z.number().int().min(0).nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(20).nullish(),
  return_tokens_as_token_ids: z.boolean().nullish(),
});
export type CompletionsRequest = z.infer<typeof completionsRequestSchema>;

export const chatCompletionsRequestSchema = z.object({
  ...samplingFields,
  messages: z
    .array(
      z.object({
        role: z.enum(["system", "user", "assistant", "developer"]),
        content: z.union([z.string(), z.array(z.object({ type: z.literal("text"), text: z.string() })).min(1)]),
      }),
    )
    .min(1),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  // Read only to refuse them: chat replies carry no log-probabilities here (see chat-completions.ts).
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
});
export type ChatCompletionsRequest = z.infer<typeof chatCompletionsRequestSchema>;

export const tokenizeRequestSchema = z
  .object({
    content: z.string().optional(),
    prompt: z.string().optional(),
    add_special: z.boolean().optional(),
    add_special_tokens: z.boolean().optional(),
  })
  .refine((body) => body.content !== undefined || body.prompt !== undefined, {
    message: "expected `content` (llama.cpp server) or `prompt` (vLLM): the text to tokenize",
    path: ["content"],
  });

export const detokenizeRequestSchema = z.object({ tokens: tokenIds });
