/** `selfalign eval` as a user runs it: tasks on a tiny GGUF write eval.json; compare prints deltas; bad data fails clearly. */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EvalResult, writeEvalResult } from "../src/eval/eval-result.js";
import type { LanguageModel } from "../src/backends/language-model.js";
import { createLlamaCppBackend } from "../src/backends/llama-cpp/index.js";
import { gguf, seededNormal, writeGguf, writeTinyModel } from "../src/gguf/index.js";
import { collectReportData } from "../src/report/report-data.js";
import { type StartServerResult, startServer } from "../src/serve/server.js";

const root = join(import.meta.dirname, "..");
const cli = join(root, "src", "cli", "cli.ts");
// Runs in a temporary folder (so relative paths appear in messages), so tsx is named by its absolute location.
const tsx = pathToFileURL(join(root, "node_modules", "tsx", "dist", "loader.mjs")).href;
let dir: string;

async function selfalign(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", tsx, cli, ...args], {
      cwd: dir,
      env: { ...process.env, CI: "1" },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "selfalign-eval-cli-"));
  await writeTinyModel(join(dir, "a.gguf"), { seed: 31, contextLength: 1024 });
  await writeTinyModel(join(dir, "b.gguf"), { seed: 32, contextLength: 1024 });
  await writeFile(
    join(dir, "TruthfulQA.csv"),
    "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n" +
      'Adversarial,Misc,"Can pigs fly?",No,"No; Pigs cannot fly","Yes; Only in spring, on Tuesdays",x\n' +
      "Adversarial,Misc,Is ice cold?,Yes,Yes,No; Never,x\n",
  );
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A random LoRA adapter on one attention projection of the tiny model (rank 2). */
async function writeAdapter(path: string): Promise<void> {
  const normal = seededNormal(5);
  const rank = 2;
  await writeGguf(path, {
    metadata: {
      "general.type": gguf.string("adapter"),
      "general.architecture": gguf.string("llama"),
      "adapter.type": gguf.string("lora"),
      "adapter.lora.alpha": gguf.f32(4),
    },
    tensors: [
      {
        name: "blk.0.attn_q.weight.lora_a",
        dims: [64, rank],
        data: Float32Array.from({ length: 64 * rank }, () => normal()),
      },
      {
        name: "blk.0.attn_q.weight.lora_b",
        dims: [rank, 64],
        data: Float32Array.from({ length: 64 * rank }, () => normal()),
      },
    ],
  });
}

describe("selfalign eval", () => {
  it("runs truthfulqa-mc1 on two models, writes eval.json with prompts, and compares them", async () => {
    for (const name of ["a", "b"]) {
      const run = await selfalign(
        "eval",
        "truthfulqa-mc1",
        "--model",
        `${name}.gguf`,
        "--data",
        "TruthfulQA.csv",
        "--out",
        `${name}.json`,
      );
      expect(run.stderr).not.toMatch(/error/i);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/truthfulqa-mc1 .*\n\s+mc1: /);
    }
    const a = JSON.parse(await readFile(join(dir, "a.json"), "utf8")) as EvalResult<{
      prompt: string;
      choices: unknown[];
      score: number;
    }>;
    expect(a.task).toBe("truthfulqa-mc1");
    expect(a.model.id).toContain("a.gguf");
    expect(a.tieBreak).toMatch(/sha256/);
    expect(a.items).toHaveLength(2);
    expect(a.items[0]!.prompt.endsWith("\n\nQ: Can pigs fly?\nA:")).toBe(true);
    expect(a.items[0]!.choices).toHaveLength(3);
    expect(a.aggregate.mc1).toBe((a.items[0]!.score + a.items[1]!.score) / 2);
    const b = JSON.parse(await readFile(join(dir, "b.json"), "utf8")) as EvalResult;
    const compare = await selfalign("eval", "compare", "a.json", "b.json");
    expect(compare.code).toBe(0);
    // Same data, same items: nothing to warn about.
    expect(compare.stderr).toBe("");
    const row = compare.stdout.split("\n").find((line) => line.startsWith("mc1"))!;
    const delta = (b.aggregate.mc1 as number) - (a.aggregate.mc1 as number);
    expect(row.trim().split(/\s+/).at(-1)).toBe(
      delta === 0 ? "0" : `${delta > 0 ? "+" : ""}${Number.isInteger(delta) ? delta : delta.toFixed(4)}`,
    );
  });

  it("loads --adapter on the model under test and records it", async () => {
    await writeAdapter(join(dir, "adapter.gguf"));
    const run = await selfalign(
      "eval",
      "truthfulqa-mc1",
      "--model",
      "a.gguf",
      "--adapter",
      "adapter.gguf",
      "--data",
      "TruthfulQA.csv",
      "--out",
      "adapted.json",
    );
    expect(run.code).toBe(0);
    type Result = EvalResult<{ choices: Array<{ logprob: number }> }>;
    const adapted = JSON.parse(await readFile(join(dir, "adapted.json"), "utf8")) as Result;
    const base = JSON.parse(await readFile(join(dir, "a.json"), "utf8")) as Result;
    expect(adapted.model.adapter).toBe("adapter.gguf");
    expect(adapted.model.id).toContain("lora");
    const logprobs = (result: Result) => result.items.flatMap((item) => item.choices.map((choice) => choice.logprob));
    expect(logprobs(adapted)).toHaveLength(logprobs(base).length);
    expect(logprobs(adapted)).not.toEqual(logprobs(base));
  });

  it("judge-single: generates answers, judges them through selfalign serve, caches, writes FastChat judgments", async () => {
    let judgeEngine: LanguageModel | undefined;
    let server: StartServerResult | undefined;
    try {
      judgeEngine = await createLlamaCppBackend({ model: join(dir, "b.gguf"), contextSize: 1024, threads: 1 });
      server = await startServer({ model: judgeEngine, port: 0, modelName: "judge" });
      await writeFile(
        join(dir, "question.jsonl"),
        `${JSON.stringify({ question_id: 7, category: "writing", turns: ["Say hi.", "Say bye."] })}\n`,
      );
      const args = [
        "eval",
        "judge-single",
        "--model",
        "a.gguf",
        "--data",
        "question.jsonl",
        "--judge",
        `openai:${server.url}#judge`,
        "--judge-max-tokens",
        "16",
      ];
      const first = await selfalign(...args, "--max-tokens", "8", "--out", "single.json");
      expect(first.stderr).not.toMatch(/error/i);
      expect(first.code).toBe(0);
      const result = JSON.parse(await readFile(join(dir, "single.json"), "utf8")) as EvalResult<{ turn: number }>;
      expect(result.task).toBe("judge-single");
      expect(result.judge?.id).toBe(`openai:${server.url}#judge`);
      expect(result.items.map((item) => item.turn)).toEqual([1, 2]);
      expect(result.settings.judgeSampling).toEqual({ temperature: 0, maxTokens: 16 });
      expect(result.aggregate).toMatchObject({ judgments: 2, cached: 0 });
      const answers = (await readFile(join(dir, "answers-single.jsonl"), "utf8")).trim().split("\n");
      expect(answers).toHaveLength(1);
      expect((await readFile(join(dir, "judgments-single.jsonl"), "utf8")).trim().split("\n")).toHaveLength(2);
      expect((await readFile(join(dir, "judge-cache.jsonl"), "utf8")).trim().split("\n")).toHaveLength(2);
      // Judging the same answers again comes from the cache.
      const again = await selfalign(...args, "--answers", "answers-single.jsonl", "--out", "single-again.json");
      expect(again.code).toBe(0);
      const cached = JSON.parse(await readFile(join(dir, "single-again.json"), "utf8")) as EvalResult;
      expect(cached.aggregate).toMatchObject({ judgments: 2, cached: 2 });

      // Pairwise against a baseline's answers: two turns, each judged in both orders.
      await writeFile(
        join(dir, "baseline.jsonl"),
        `${JSON.stringify({ question_id: 7, model_id: "baseline", choices: [{ index: 0, turns: ["Hello!", "Goodbye!"] }] })}\n`,
      );
      const pairwise = await selfalign(
        "eval",
        "judge-pairwise",
        ...args.slice(2),
        "--answers",
        "answers-single.jsonl",
        "--baseline",
        "baseline.jsonl",
        "--out",
        "pairwise.json",
      );
      expect(pairwise.code).toBe(0);
      const compared = JSON.parse(await readFile(join(dir, "pairwise.json"), "utf8")) as EvalResult<{
        games: unknown[];
      }>;
      expect(compared.task).toBe("judge-pairwise");
      expect(compared.settings.baselineModelId).toBe("baseline");
      expect(compared.items.map((item) => item.games.length)).toEqual([2, 2]);
      const { wins, ties, losses, unparsed } = compared.aggregate as Record<string, number>;
      expect(wins! + ties! + losses! + unparsed!).toBe(2);
      const judgments = (await readFile(join(dir, "judgments-pairwise.jsonl"), "utf8")).trim().split("\n");
      expect(judgments.map((line) => (JSON.parse(line) as { model_2: string }).model_2)).toEqual([
        "baseline",
        "baseline",
      ]);
    } finally {
      await server?.close();
      await judgeEngine?.close();
    }
  });

  it("--few-shot-file puts the given primer before each question; --run writes where the report reads", async () => {
    // Our own two pairs, in the layout of lm-evaluation-harness's TruthfulQA primer.
    const primer =
      "Q: What colour is a clear daytime sky?\nA: A clear daytime sky is blue.\n\nQ: How many days are in a week?\nA: A week has seven days.";
    await writeFile(join(dir, "primer.txt"), `${primer}\n`);
    await mkdir(join(dir, "run"), { recursive: true });
    const run = await selfalign(
      "eval",
      "truthfulqa-mc1",
      "--model",
      "a.gguf",
      "--data",
      "TruthfulQA.csv",
      "--few-shot-file",
      "primer.txt",
      "--run",
      "run",
    );
    expect(run.stderr).not.toMatch(/error/i);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`wrote ${join("run", "eval", "truthfulqa-mc1.json")}`);
    const result = JSON.parse(await readFile(join(dir, "run", "eval", "truthfulqa-mc1.json"), "utf8")) as EvalResult<{
      prompt: string;
      choices: Array<{ logprob: number }>;
    }>;
    expect(result.settings.fewShotPrompt).toBe(primer);
    expect(result.items[0]!.prompt).toBe(`${primer}\n\nQ: Can pigs fly?\nA:`);
    expect(result.data).toEqual(["TruthfulQA.csv", "primer.txt"]);
    const base = JSON.parse(await readFile(join(dir, "a.json"), "utf8")) as typeof result;
    expect(result.items[0]!.choices[0]!.logprob).not.toBe(base.items[0]!.choices[0]!.logprob);

    const report = await collectReportData(join(dir, "run"));
    expect(report.evaluations).toEqual([
      {
        name: join("eval", "truthfulqa-mc1.json"),
        task: "truthfulqa-mc1",
        metrics: { mc1: result.aggregate.mc1, n: 2 },
      },
    ]);
    const both = await selfalign("eval", "hhh", "--model", "a.gguf", "--data", "x", "--run", "run", "--out", "o.json");
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/give --out or --run, not both/);
  });

  it("compare warns when the two results scored different items", async () => {
    const result = (ids: string[]): EvalResult => ({
      task: "truthfulqa-mc1",
      model: { id: "m" },
      data: [],
      createdAt: new Date(0).toISOString(),
      settings: {},
      aggregate: { mc1: 0.5, n: ids.length },
      items: ids.map((id) => ({ id, score: 0.5 })),
      warnings: [],
    });
    await writeEvalResult(join(dir, "x.json"), result(["0", "1", "2"]));
    await writeEvalResult(join(dir, "y.json"), result(["0", "2", "3", "4"]));
    const compare = await selfalign("eval", "compare", "x.json", "y.json");
    expect(compare.code).toBe(0);
    expect(compare.stderr).toMatch(
      /^selfalign: warning: x\.json and y\.json scored different items: 1 only in x\.json \(1\); 2 only in y\.json \(3, 4\)\. Their aggregates average over different questions/,
    );
    expect(compare.stdout).toMatch(/^n +3 +4 +\+1$/m);
  });

  it("fails with the file, line and field when a data file has the wrong format", async () => {
    await writeFile(
      join(dir, "bad.json"),
      '[\n  {"question": "Q?", "mc1_targets": {"a": 1, "b": 0}},\n  {"question": "R?"}\n]\n',
    );
    const run = await selfalign("eval", "truthfulqa-mc2", "--model", "a.gguf", "--data", "bad.json");
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /^selfalign: bad\.json, line 2, \[0\]\.mc2_targets: .*expected TruthfulQA multiple-choice JSON/,
    );
    expect(run.stderr).not.toMatch(/\n\s+at /);
    const missing = await selfalign("eval", "hhh", "--model", "a.gguf", "--data", "nowhere");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nowhere: not found; expected a BIG-bench task\.json/);
    const nothingToJudge = await selfalign("eval", "judge-single", "--judge", "b.gguf", "--data", "question.jsonl");
    expect(nothingToJudge.code).toBe(1);
    expect(nothingToJudge.stderr).toBe(
      "selfalign: judge-single needs --answers <file>, or --model <spec> to generate the answers to judge\n",
    );
  });
});
