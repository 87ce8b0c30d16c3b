/**
 * Finished judgements, cached in a JSONL file keyed by sha256 of (judge id, prompt messages), so a re-run only asks
 * the judge about what is new. The raw judge output is stored, not the parsed rating, so a better parser applies to
 * cached judgements too. A torn last line (killed process) is ignored.
 */
import { createHash } from "node:crypto";
import type { ChatMessage, LanguageModel, SamplingOptions } from "../../backends/language-model.js";
import { JsonlAppender, readJsonl } from "../../run-store/jsonl.js";
import { canonicalJson } from "../../run-store/record-id.js";

export interface JudgeCacheRecord {
  /** The cache key. */
  id: string;
  judge: string;
  output: string;
  createdAt: string;
  [field: string]: unknown;
}

export function judgeCacheKey(judgeId: string, messages: readonly ChatMessage[]): string {
  return createHash("sha256")
    .update(canonicalJson([judgeId, messages]))
    .digest("hex");
}

export class JudgeCache {
  private constructor(
    private readonly entries: Map<string, string>,
    private readonly appender: JsonlAppender | undefined,
  ) {}

  /** Open a cache file (created on first write); without a path the cache lives in memory only. */
  static async open(path?: string): Promise<JudgeCache> {
    const entries = new Map<string, string>();
    if (path) {
      const { records } = await readJsonl<JudgeCacheRecord>(path, { repair: true });
      for (const record of records) if (typeof record.output === "string") entries.set(record.id, record.output);
    }
    return new JudgeCache(entries, path ? new JsonlAppender(path) : undefined);
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): string | undefined {
    return this.entries.get(key);
  }

  set(key: string, judge: string, output: string): void {
    this.entries.set(key, output);
    this.appender?.append({ id: key, judge, output, createdAt: new Date().toISOString() } satisfies JudgeCacheRecord);
  }

  close(): void {
    this.appender?.close();
  }
}

export interface JudgeCallResult {
  output: string;
  cached: boolean;
}

/** Ask the judge unless the cache already holds its answer to exactly these messages. */
export async function callJudge(
  judge: LanguageModel,
  messages: ChatMessage[],
  cache: JudgeCache,
  sampling: SamplingOptions & { signal?: AbortSignal },
): Promise<JudgeCallResult> {
  const key = judgeCacheKey(judge.id, messages);
  const hit = cache.get(key);
  if (hit !== undefined) return { output: hit, cached: true };
  const result = await judge.chat(messages, sampling);
  cache.set(key, judge.id, result.message.content);
  return { output: result.message.content, cached: false };
}
