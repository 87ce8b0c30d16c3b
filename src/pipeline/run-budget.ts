/**
 * A run's spending limit (`budget:` in the config): tokens (prompt + generated, as the usage ledgers count them) or
 * money (those tokens at the run model's `pricePerMillionTokens`). The count starts from what the run's folders have
 * already paid for and grows with each ledger line. Once it is reached no new request starts: the requests in flight
 * finish and are committed, then the run stops with BudgetReachedError, resumable like after Ctrl+C.
 */
import type { LanguageModel, TokenUsage } from "../backends/language-model.js";
import { AbortedError, BudgetReachedError } from "../errors/index.js";

export interface BudgetLimit {
  /** Most prompt + generated tokens of the whole run. */
  tokens?: number;
  /** Most money the run may spend (needs `price`). */
  cost?: number;
}

export interface TokenPrice {
  /** Money units per million prompt tokens. */
  prompt: number;
  /** Money units per million generated tokens. */
  completion: number;
}

/** The cost of some usage at a price per million tokens. */
export function usageCost(usage: { promptTokens: number; completionTokens: number }, price: TokenPrice): number {
  return (usage.promptTokens * price.prompt + usage.completionTokens * price.completion) / 1e6;
}

export class RunBudget {
  private readonly spent: { promptTokens: number; completionTokens: number };
  private inFlight = 0;
  private waiting: Array<() => void> = [];
  private readonly controller = new AbortController();

  constructor(
    readonly limit: BudgetLimit,
    spentBefore: { promptTokens: number; completionTokens: number },
    readonly price?: TokenPrice,
  ) {
    this.spent = { promptTokens: spentBefore.promptTokens, completionTokens: spentBefore.completionTokens };
  }

  /** Aborted (with a BudgetReachedError as its reason) once the budget stopped the run. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Count one request's tokens (a line of a usage ledger). */
  add(usage: TokenUsage): void {
    this.spent.promptTokens += usage.promptTokens;
    this.spent.completionTokens += usage.completionTokens;
  }

  get tokens(): number {
    return this.spent.promptTokens + this.spent.completionTokens;
  }

  get cost(): number | undefined {
    return this.price ? usageCost(this.spent, this.price) : undefined;
  }

  get reached(): boolean {
    if (this.limit.tokens !== undefined && this.tokens >= this.limit.tokens) return true;
    const cost = this.cost;
    return this.limit.cost !== undefined && cost !== undefined && cost >= this.limit.cost;
  }

  /** What was spent against which limit, for the stop message. */
  describe(): string {
    const parts: string[] = [];
    if (this.limit.tokens !== undefined) parts.push(`${this.tokens} of budget.tokens ${this.limit.tokens} tokens`);
    if (this.limit.cost !== undefined) parts.push(`${(this.cost ?? 0).toFixed(4)} of budget.cost ${this.limit.cost}`);
    return parts.join(", ");
  }

  /** The error the run stops with. */
  error(): BudgetReachedError {
    return new BudgetReachedError(
      `budget reached: the run has used ${this.describe()}. What finished is saved; raise the budget in the config and run the same command again to go on (paid requests are not repeated)`,
      { field: this.limit.tokens !== undefined ? "budget.tokens" : "budget.cost" },
    );
  }

  /** Before a request: returns at once under the budget; past it, waits for the requests in flight, then stops. */
  private async enter(): Promise<void> {
    if (!this.reached && !this.signal.aborted) {
      this.inFlight++;
      return;
    }
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.waiting.push(resolve));
    if (!this.signal.aborted) this.controller.abort(this.error());
    throw new AbortedError();
  }

  private leave(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.reached) {
      const waiting = this.waiting;
      this.waiting = [];
      for (const resolve of waiting) resolve();
    }
  }

  private async gated<T>(work: () => Promise<T>): Promise<T> {
    await this.enter();
    try {
      return await work();
    } finally {
      this.leave();
    }
  }

  /** The model with every request passing the budget first (tokenising, capabilities and closing pass straight). */
  wrap(model: LanguageModel): LanguageModel {
    const gated = <T>(work: () => Promise<T>) => this.gated(work);
    const budget = this;
    const scoreTokens = model.scoreTokens?.bind(model);
    return {
      get id() {
        return model.id;
      },
      capabilities: () => model.capabilities(),
      async *complete(requests, options) {
        await budget.enter();
        try {
          yield* model.complete(requests, options);
        } finally {
          budget.leave();
        }
      },
      score: (prompt, continuations, options) => gated(() => model.score(prompt, continuations, options)),
      ...(scoreTokens
        ? {
            scoreTokens: (context, continuations, options) => gated(() => scoreTokens(context, continuations, options)),
          }
        : {}),
      tokenize: (text, options) => model.tokenize(text, options),
      detokenize: (tokens) => model.detokenize(tokens),
      countTokens: (text) => model.countTokens(text),
      chat: (messages, options) => gated(() => model.chat(messages, options)),
      close: () => model.close(),
    };
  }
}
