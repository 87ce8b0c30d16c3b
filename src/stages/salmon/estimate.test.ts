/**
 * The arithmetic of SALMON's estimates, with one token per character so every figure can be counted exactly from
 * the prompts the stage would send: the judge prompts of every pair, principle and order built here (their distinct
 * prefixes counted as a trie's nodes), and PPO's steps walked one by one.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../../constitution/index.js";
import type { StageEstimateContext } from "../../pipeline/stage-definition.js";
import { chatPrompt } from "../engrave/prompt.js";
import { longestQuery } from "../shared/longest-prompts.js";
import { salmonPreferencesOptionsSchema } from "./definitions.js";
import { estimateSalmonPreferences, estimateSalmonRl } from "./estimate.js";
import { judgePromptHead, judgePromptTail } from "./judge-prompt.js";
import { reviewerPrompt, rewardPrincipleText, rlGuidelines, salmonOf } from "./reviewer-prompt.js";
import { salmonRlOptionsSchema } from "./rl-definition.js";

let constitution: Constitution;

beforeAll(async () => {
  constitution = await loadConstitution(defaultConstitutionDir());
});

const byCharacter = async (text: string) => text.length;

function contextOf<O>(options: O, upstream: Record<string, number>, recordTokens?: number): StageEstimateContext<O> {
  return {
    options,
    constitution,
    countTokens: byCharacter,
    upstreamRecords: (stage) => upstream[stage] ?? 0,
    upstreamRecordTokens: () => recordTokens,
    noPrefixReuse: false,
  };
}

/** The distinct non-empty prefixes of the texts: what a scorer that evaluates each shared prefix once evaluates. */
function trieSize(texts: readonly string[]): number {
  const sorted = [...new Set(texts)].sort();
  let nodes = 0;
  for (const [i, text] of sorted.entries()) {
    const previous = sorted[i - 1] ?? "";
    let common = 0;
    while (common < text.length && text[common] === previous[common]) common++;
    nodes += text.length - common;
  }
  return nodes;
}

describe("salmon-preferences", () => {
  it("sends pairs x principles x 2 orders of score calls and evaluates the distinct prefixes of their prompts", async () => {
    const ids = ["concise", "honest", "methodical"];
    const principles = salmonOf(constitution).rewardPrinciples.filter((principle) => ids.includes(principle.id));
    expect(principles).toHaveLength(3);
    const pairs = 5;
    const answer = 40;
    const estimate = await estimateSalmonPreferences(
      contextOf(salmonPreferencesOptionsSchema.parse({ principles: ids }), { "salmon-responses": 2 * pairs }, answer),
    );

    // Every prompt the stage would send for 5 pairs with the longest request and answers of 40 characters; each
    // pair's request and answers start with characters of their own, so only the judge's fixed text is shared.
    const query = longestQuery(constitution);
    const prompts: string[] = [];
    for (let k = 0; k < pairs; k++) {
      const request = { instruction: String.fromCharCode(65 + k) + query.instruction.slice(1), input: query.input };
      const first = `p${k}`.padEnd(answer, "x");
      const second = `q${k}`.padEnd(answer, "y");
      for (const [a, b] of [
        [first, second],
        [second, first],
      ] as const) {
        for (const principle of principles) {
          const tail = judgePromptTail(
            constitution.assistant,
            principle.dimension,
            rewardPrincipleText(constitution, principle, false),
          );
          prompts.push(judgePromptHead(constitution.assistant, request, a, b) + tail);
        }
      }
    }
    expect(estimate.requests).toBe(pairs * 3 * 2);
    expect(estimate.requests).toBe(prompts.length);
    expect(estimate.promptTokens).toBe(prompts.reduce((sum, prompt) => sum + prompt.length, 0));
    expect(estimate.evaluatedPromptTokens).toBe(trieSize(prompts));
    expect(estimate.evaluatedPromptTokens).toBeLessThan(estimate.promptTokens / 2);
    expect(estimate.completionTokens).toBe(0);
    expect(estimate.records).toBe(pairs);
    expect(estimate.prompts[0]).toMatchObject({
      tokens: Math.max(...prompts.map((prompt) => prompt.length)),
      maxTokens: 1,
      role: "generator",
      lengthField: "stages.salmon-responses.sampling.maxTokens",
    });
  });

  it("judges at most maxPairs pairs, and sends its prompts to a judge of its own when one is set", async () => {
    const estimate = await estimateSalmonPreferences(
      contextOf(
        salmonPreferencesOptionsSchema.parse({ maxPairs: 2, judge: "http://127.0.0.1:1/v1" }),
        { "salmon-responses": 20 },
        10,
      ),
    );
    expect(estimate.requests).toBe(2 * salmonOf(constitution).rewardPrinciples.length * 2);
    expect(estimate.prompts[0]!.role).toBe("judge");
  });
});

describe("salmon-rl", () => {
  it("counts PPO's rollouts, rewards and update passes step by step", async () => {
    const options = salmonRlOptionsSchema.parse({
      embedded: { rolloutBatch: 3, epochs: 2, ppoEpochs: 2, responseLength: 50, queryLength: 100_000 },
    });
    const estimate = await estimateSalmonRl(contextOf(options, { "self-instruct": 4, "red-team": 3 }));
    const query = longestQuery(constitution);
    const prompt = chatPrompt(constitution.assistant, "concise", query.instruction, query.input).length;
    const drawn = [...salmonOf(constitution).rlPrinciples]
      .sort((a, b) => b.definition.length - a.definition.length)
      .slice(0, 3);
    const reviewer = reviewerPrompt({
      assistantName: constitution.assistant.name,
      instruction: query.instruction,
      input: query.input,
      response: "r".repeat(50),
      guidelines: rlGuidelines(constitution, drawn),
    }).length;
    // 2 epochs over 7 prompts in batches of 3: 4 steps.
    let requests = 0;
    let sent = 0;
    let generated = 0;
    let trained = 0;
    for (let step = 0; step < Math.floor((2 * 7) / 3); step++) {
      for (let rollout = 0; rollout < 3; rollout++) {
        requests += 2;
        sent += prompt + reviewer;
        generated += 50;
        // Policy, reference and value forwards, then each of 2 PPO epochs trains policy and value.
        trained += (prompt + 50) * (3 + 2 * 2);
      }
    }
    expect(estimate).toMatchObject({
      requests,
      promptTokens: sent,
      evaluatedPromptTokens: sent,
      completionTokens: generated,
      trainTokens: trained,
      records: 12,
    });
    expect(requests).toBe(24);
  });

  it("caps prompts at queryLength and steps at maxSteps; no step when even the fixed part is too long", async () => {
    const fixed = chatPrompt(constitution.assistant, "concise", "").length;
    const queryLength = fixed + 5;
    const query = longestQuery(constitution);
    expect(chatPrompt(constitution.assistant, "concise", query.instruction, query.input).length).toBeGreaterThan(
      queryLength,
    );
    const embedded = { rolloutBatch: 2, maxSteps: 5, ppoEpochs: 1, responseLength: 10, queryLength };
    const capped = await estimateSalmonRl(
      contextOf(salmonRlOptionsSchema.parse({ embedded }), { "self-instruct": 100 }),
    );
    expect(capped.completionTokens).toBe(5 * 2 * 10);
    expect(capped.trainTokens).toBe(5 * 2 * (queryLength + 10) * (3 + 2));
    expect(capped.prompts.find((prompt) => prompt.label === "rollout prompt")!.tokens).toBe(queryLength);
    const none = await estimateSalmonRl(
      contextOf(salmonRlOptionsSchema.parse({ embedded: { ...embedded, queryLength: fixed - 1 } }), {
        "self-instruct": 100,
      }),
    );
    expect(none).toMatchObject({ requests: 0, completionTokens: 0, trainTokens: 0 });
    expect(none.notes.join(" ")).toContain("raise embedded.queryLength");
    const openrlhf = await estimateSalmonRl(
      contextOf(salmonRlOptionsSchema.parse({ trainer: "openrlhf" }), { "self-instruct": 100 }),
    );
    expect(openrlhf).toMatchObject({ requests: 0, promptTokens: 0, completionTokens: 0, trainTokens: 0, records: 100 });
  });
});
