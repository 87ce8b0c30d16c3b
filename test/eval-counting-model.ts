/** A LanguageModel that delegates to another and counts calls (tests of caching and capability checks). */
import type {
  Capabilities,
  ChatMessage,
  ChatResult,
  CompleteOptions,
  CompletionRequest,
  CompletionResult,
  LanguageModel,
  SamplingOptions,
  ScoreResult,
  TokenizeOptions,
} from "../src/backends/language-model.js";

export class CountingModel implements LanguageModel {
  scoreCalls: Array<{ prompt: string; continuations: string[] }> = [];
  chatCalls = 0;

  constructor(
    private readonly inner: LanguageModel,
    private readonly overrides: Partial<Capabilities> = {},
    readonly id = inner.id,
  ) {}

  capabilities(): Capabilities {
    return { ...this.inner.capabilities(), ...this.overrides };
  }
  complete(requests: CompletionRequest[], options?: CompleteOptions): AsyncIterable<CompletionResult> {
    return this.inner.complete(requests, options);
  }
  score(prompt: string, continuations: string[], options?: CompleteOptions): Promise<ScoreResult[]> {
    this.scoreCalls.push({ prompt, continuations });
    return this.inner.score(prompt, continuations, options);
  }
  tokenize(text: string, options?: TokenizeOptions): Promise<number[]> {
    return this.inner.tokenize(text, options);
  }
  detokenize(tokens: number[]): Promise<string> {
    return this.inner.detokenize(tokens);
  }
  countTokens(text: string): Promise<number> {
    return this.inner.countTokens(text);
  }
  chat(messages: ChatMessage[], options?: SamplingOptions & CompleteOptions): Promise<ChatResult> {
    this.chatCalls++;
    return this.inner.chat(messages, options);
  }
  async close(): Promise<void> {}
}
