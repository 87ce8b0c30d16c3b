/**
 * `selfalign serve --reward-model` answering OpenRLHF's remote reward-model calls, on a tiny reward model trained
 * here. The requests mirror OpenRLHF 0.11.0's client, openrlhf/utils/agent.py (SingleTurnAgentExecutor.execute and
 * _fetch_rewards_via_http, the same in 0.10.2): one sample per request, aiohttp's `session.post(url, json=payload)`
 * (Content-Type application/json, no Authorization header) with payload {"query": [q], "prompts": [p],
 * "labels": [l]}, q = tokenizer.decode(prompt tokens + response tokens, skip_special_tokens=False) — the prompt,
 * the response and the EOS text — and the reply read as rewards_info["rewards"], ["scores"], ["extra_logs"].
 * Each reward must equal RewardModel.score of the reviewer prompt (interventions + the RL principles the reply
 * names) plus the symbolic rewards, within 1e-4.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Constitution, defaultConstitutionDir, loadConstitution } from "../src/constitution/index.js";
import { writeTinyModel } from "../src/gguf/index.js";
import { encodeRewardLabel } from "../src/serve/reward/openrlhf-request.js";
import { readSpecialTokens } from "../src/serve/reward/response-of-query.js";
import { RewardService } from "../src/serve/reward/reward-service.js";
import { startServer } from "../src/serve/server.js";
import { chatPrompt } from "../src/stages/engrave/prompt.js";
import { reviewedText, reviewerPrompt, rlGuidelines } from "../src/stages/salmon/reviewer-prompt.js";
import { EmbeddedTrainer } from "../src/training/embedded/embedded-trainer.js";
import { RewardModel } from "../src/training/reward/reward-model.js";
import { markerPreferences } from "./fixtures/toy-preferences.js";

let dir: string;
let rewardDir: string;
let constitution: Constitution;
let reference: RewardModel;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-serve-reward-"));
  const base = join(dir, "base.gguf");
  // Byte-level tokens: a reviewer prompt is ~1,500 tokens, so the context is 4096.
  await writeTinyModel(base, { dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 1, contextLength: 4096, seed: 5 });
  rewardDir = join(dir, "rm");
  await new EmbeddedTrainer().train({
    kind: "reward",
    base,
    output: rewardDir,
    examples: markerPreferences(8, 2),
    options: { rank: 4, maxSteps: 2, kernel: "ts", learningRate: 1e-2, checkpointEvery: 0, dropout: 0 },
  });
  constitution = await loadConstitution(defaultConstitutionDir());
  reference = await RewardModel.load(rewardDir, { threads: 1 });
}, 120_000);

afterAll(async () => {
  await reference?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Reply {
  rewards: number[];
  scores: number[];
  extra_logs: Record<string, number[]>;
  principles: string[][];
}

/** What OpenRLHF's _fetch_rewards_via_http sends for one sample: aiohttp `json=` (no auth header). */
async function openRlhfPost(url: string, query: string, prompt: string, label: unknown) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: [query], prompts: [prompt], labels: [label] }),
  });
  return { status: response.status, body: (await response.json()) as Reply & { error?: { message: string } } };
}

/** The reward the reply should carry: RewardModel.score of the reviewer prompt it names, plus the shaping. */
async function expectedScore(instruction: string, response: string, principles: string[]): Promise<number> {
  const salmon = constitution.salmon!;
  const drawn = principles.map((id) => salmon.rlPrinciples.find((p) => p.id === id)!);
  const text = reviewerPrompt({
    assistantName: constitution.assistant.name,
    instruction,
    response: reviewedText(response),
    guidelines: rlGuidelines(constitution, drawn),
  });
  const [score] = await reference.score([text]);
  return score!;
}

function startCli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli/cli.ts", "serve", "--reward-model", rewardDir, "--port", "0", ...args],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } },
  );
  let stdout = "";
  const output = { stderr: "" };
  child.stderr!.on("data", (chunk: Buffer) => {
    output.stderr += chunk.toString();
  });
  const url = new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /(http:\/\/127\.0\.0\.1:\d+\/get_reward)/.exec(stdout);
      if (match) resolve(match[1]!);
    });
    child.on("exit", (code) => reject(new Error(`serve exited early (${code}): ${output.stderr}`)));
  });
  return { child, url, output, stdout: () => stdout };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.on("exit", resolve));
  child.kill("SIGINT");
  await exited;
}

describe("selfalign serve --reward-model: OpenRLHF's remote reward calls", () => {
  it("rewards each response as RewardModel.score of its reviewer prompt plus the symbolic rewards, within 1e-4", async () => {
    // A bearer token is configured, yet OpenRLHF's unauthenticated calls go through: the reward route's no-token mode.
    const server = startCli(["--reward-parallel", "2", "--threads", "1", "--api-key-env", "REWARD_TEST_KEY"], {
      REWARD_TEST_KEY: "secret",
    });
    try {
      const url = await server.url;
      expect(server.stdout()).toContain("(no token: keep this address inside the cluster)");
      const assistant = constitution.assistant;
      const general = "Name a colour of the sky.";
      const prompt = chatPrompt(assistant, "concise", general);
      // Stopped: the engraved format's next-turn marker, then the EOS the tokenizer decodes to "</s>".
      const stopped = await openRlhfPost(
        url,
        `${prompt}\nBlue, on a clear day.\n\n### User\n</s>`,
        prompt,
        encodeRewardLabel({ instruction: general }),
      );
      expect(stopped.status).toBe(200);
      const reasoning = "What is 12 times 7?";
      const reasoningPrompt = chatPrompt(assistant, "concise", reasoning);
      // Cut at max_new_tokens: no EOS, no marker. The label is the raw instruction here (no prompt type: general).
      const cut = await openRlhfPost(
        url,
        `${reasoningPrompt}\n12 times 7 is 84, because 12 times`,
        reasoningPrompt,
        reasoning,
      );
      expect(cut.status).toBe(200);
      const typed = await openRlhfPost(
        url,
        `${reasoningPrompt}\n84.</s>`,
        reasoningPrompt,
        encodeRewardLabel({ instruction: reasoning, promptType: "reasoning" }),
      );

      const cases = [
        { reply: stopped.body, instruction: general, response: "\nBlue, on a clear day.\n\n### User\n", stop: 0, m: 1 },
        { reply: cut.body, instruction: reasoning, response: "\n12 times 7 is 84, because 12 times", stop: -6, m: 1 },
        { reply: typed.body, instruction: reasoning, response: "\n84.", stop: 0, m: -0.4 },
      ];
      for (const { reply, instruction, response, stop, m } of cases) {
        expect(reply.rewards).toHaveLength(1);
        expect(reply.principles[0]).toHaveLength(3);
        const score = await expectedScore(instruction, response, reply.principles[0]!);
        expect(Math.abs(reply.extra_logs.reward_model![0]! - score)).toBeLessThanOrEqual(1e-4);
        const tokens = reference.tokenize(reviewedText(response)).length - 1;
        expect(reply.extra_logs.response_tokens).toEqual([tokens]);
        expect(reply.extra_logs.stop_penalty).toEqual([stop]);
        expect(reply.extra_logs.length_bonus![0]).toBeCloseTo(
          5 * Math.max(-0.8, Math.min(0.8, (tokens / 1024) * m)),
          10,
        );
        expect(reply.rewards[0]).toBeCloseTo(score + stop + reply.extra_logs.length_bonus![0]!, 4);
        expect(reply.scores).toEqual(reply.rewards);
      }
      // The reasoning-typed prompt drew the reasoning-boosted principles.
      const boosted = constitution
        .salmon!.rlPrinciples.filter((p) => p.boostFor.includes("reasoning"))
        .map((p) => p.id);
      expect(typed.body.principles[0]).toEqual(expect.arrayContaining(boosted));

      // A retry (OpenRLHF retries a failed call up to 5 times) is judged under the same principles: the same reply.
      const again = await openRlhfPost(
        url,
        `${prompt}\nBlue, on a clear day.\n\n### User\n</s>`,
        prompt,
        encodeRewardLabel({ instruction: general }),
      );
      expect(again.body).toEqual(stopped.body);

      // Many at once: queued, never turned away (OpenRLHF would drop the reward of a refused sample).
      const burst = await Promise.all(
        Array.from({ length: 6 }, (_, i) => openRlhfPost(url, `${prompt}\nColour ${i}.</s>`, prompt, general)),
      );
      expect(burst.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);

      // Bad input: an OpenAI-shaped 400, and a loud line on stderr; the server keeps serving.
      const bad = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: ["no prompt sent"] }),
      });
      expect(bad.status).toBe(400);
      const error = (await bad.json()) as { error: { message: string; param: string } };
      expect(error.error).toMatchObject({ param: "prompts" });
      const foreign = await openRlhfPost(url, "a query of another prompt</s>", prompt, general);
      expect(foreign.status).toBe(400);
      expect(foreign.body.error?.message).toMatch(/does not contain prompts\[0\]/);
      await expect.poll(() => server.output.stderr).toMatch(/reward error: POST \/get_reward failed with 400/);
      expect((await openRlhfPost(url, `${prompt}\nBlue.</s>`, prompt, general)).status).toBe(200);
      // The OpenAI routes are not served without --model.
      expect(
        (await fetch(url.replace("/get_reward", "/v1/models"), { headers: { authorization: "Bearer secret" } })).status,
      ).toBe(404);
    } finally {
      await stop(server.child);
    }
  }, 180_000);

  it("asks for the bearer token on /get_reward only with --reward-requires-key (library: requireApiKey)", async () => {
    const model = await RewardModel.load(rewardDir, { threads: 1 });
    const service = new RewardService({
      model,
      constitution,
      specialTokens: await readSpecialTokens(model.basePath),
    });
    const server = await startServer({
      reward: { service, requireApiKey: true },
      modelName: "rm",
      port: 0,
      apiKey: "secret",
    });
    try {
      const url = server.url.replace(/\/v1$/, "/get_reward");
      const prompt = chatPrompt(constitution.assistant, "concise", "Hi");
      const body = JSON.stringify({ query: [`${prompt}\nHello.</s>`], prompts: [prompt], labels: ["Hi"] });
      const open = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect(open.status).toBe(401);
      const keyed = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer secret" },
        body,
      });
      expect(keyed.status).toBe(200);
    } finally {
      await server.close();
      await model.dispose();
    }
  });
});
