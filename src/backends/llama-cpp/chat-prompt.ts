import {
  type ChatHistoryItem,
  type ChatWrapper,
  GeneralChatWrapper,
  type LlamaModel,
  resolveChatWrapper,
  type Token,
} from "node-llama-cpp";
import type { ChatMessage } from "../language-model.js";

/** The model's chat wrapper (from its chat template); models without a template (base models, our tiny test
 * models) get a plain "### User / ### Assistant" format (node-llama-cpp's GeneralChatWrapper). */
export function chatWrapperFor(model: LlamaModel): ChatWrapper {
  const metadata = model.fileInfo.metadata as { tokenizer?: { chat_template?: unknown } } | undefined;
  const template = metadata?.tokenizer?.chat_template;
  if (typeof template !== "string" || template.trim() === "") return new GeneralChatWrapper();
  try {
    return resolveChatWrapper(model, { fallbackToOtherWrappersOnJinjaError: true, noJinja: false }) as ChatWrapper;
  } catch {
    return new GeneralChatWrapper();
  }
}

/** Render messages for generating the assistant's next turn: prompt tokens and the wrapper's textual stop strings. */
export function renderChat(
  model: LlamaModel,
  wrapper: ChatWrapper,
  messages: readonly ChatMessage[],
): { tokens: Token[]; stops: string[] } {
  const history: ChatHistoryItem[] = messages.map((message) =>
    message.role === "system"
      ? { type: "system", text: message.content }
      : message.role === "user"
        ? { type: "user", text: message.content }
        : { type: "model", response: [message.content] },
  );
  history.push({ type: "model", response: [] });
  const state = wrapper.generateContextState({ chatHistory: history });
  let tokens = state.contextText.tokenize(model.tokenizer);
  const bos = model.tokens.bos;
  if (model.tokens.shouldPrependBosToken && bos != null && tokens[0] !== bos) tokens = [bos, ...tokens];
  const stops: string[] = [];
  for (const trigger of state.stopGenerationTriggers) {
    const values = trigger.values;
    if (values.length > 0 && values.every((value) => typeof value === "string")) stops.push(values.join(""));
  }
  return { tokens, stops };
}
