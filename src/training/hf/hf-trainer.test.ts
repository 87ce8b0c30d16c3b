import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../errors/index.js";
import type { ProgressEvent } from "../../progress/progress-event.js";
import { packageRoot } from "../../package-root.js";
import { checkPython, HfTrainer } from "./hf-trainer.js";
import { HfTrainingError } from "./hf-training-error.js";

// No GPU here: these tests run the TypeScript side against a stand-in script that speaks the same JSON-lines
// protocol as python/train_lora.py. The real script is verified on a GPU (see the report).
const work = mkdtempSync(join(tmpdir(), "selfalign-hf-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const fakeScript = join(work, "fake_train.py");
writeFileSync(
  fakeScript,
  `import argparse, json, os, sys
p = argparse.ArgumentParser()
for name in ["--model", "--data", "--output", "--target-modules", "--schedule", "--overlong", "--dtype"]:
    p.add_argument(name)
for name in ["--rank", "--max-steps", "--batch-size", "--gradient-accumulation", "--warmup-steps", "--cutoff-len", "--seed"]:
    p.add_argument(name, type=int, default=0)
for name in ["--alpha", "--dropout", "--learning-rate", "--epochs", "--weight-decay", "--max-grad-norm"]:
    p.add_argument(name, type=float)
p.add_argument("--gradient-checkpointing", action="store_true")
a = p.parse_args()
examples = [json.loads(line) for line in open(a.data)]
if examples[0]["prompt"] == "FAIL":
    print(json.dumps({"event": "error", "message": "an example has 9000 tokens, more than --cutoff-len 2048"}))
    sys.exit(1)
print("Some library log line", flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)
print(json.dumps({"event": "train-start", "total_steps": a.max_steps, "examples": len(examples), "processes": 1}))
for step in range(1, a.max_steps + 1):
    print(json.dumps({"event": "train-step", "step": step, "total_steps": a.max_steps, "loss": 3.0 / step,
                      "lr": a.learning_rate, "grad_norm": 0.5, "tokens": 100, "tokens_per_second": 1000.0}))
os.makedirs(a.output, exist_ok=True)
json.dump({"r": a.rank, "target_modules": a.target_modules.split(",")}, open(os.path.join(a.output, "adapter_config.json"), "w"))
print(json.dumps({"event": "train-end", "steps": a.max_steps, "final_loss": 3.0 / a.max_steps, "output": a.output}))
`,
);

const examples = [
  { prompt: "Q: 1+1?\nA:", completion: " 2" },
  { prompt: "Q: capital of France?\nA:", completion: " Paris" },
];

describe("HfTrainer (stand-in script, python launcher)", () => {
  it("writes the JSONL, streams train-step events, and returns the loss curve and adapter directory", async () => {
    const output = join(work, "run-ok");
    const events: ProgressEvent[] = [];
    const trainer = new HfTrainer({ launcher: "python", script: fakeScript, preflight: false });
    const result = await trainer.train({
      base: "/models/tiny",
      examples,
      output,
      options: { maxSteps: 3, rank: 4, learningRate: 0.001, targets: ["q", "v"] },
      onProgress: (event) => events.push(event),
    });
    const written = readFileSync(join(output, "sft.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(written).toEqual(examples);
    const steps = events.filter((event) => event.type === "train-step");
    expect(steps).toEqual(
      [1, 2, 3].map((step) => ({
        type: "train-step",
        step,
        totalSteps: 3,
        loss: 3 / step,
        learningRate: 0.001,
        tokensPerSecond: 1000,
      })),
    );
    expect(result.steps).toBe(3);
    expect(result.finalLoss).toBe(1);
    expect(result.lossCurve.map((point) => point.loss)).toEqual([3, 1.5, 1]);
    expect(result.peftDir).toBe(join(output, "peft"));
    const config = JSON.parse(readFileSync(join(result.peftDir, "adapter_config.json"), "utf8"));
    expect(config).toEqual({ r: 4, target_modules: ["q_proj", "v_proj"] });
    expect(events.some((event) => event.type === "message" && /3 steps on 2 examples/.test(event.text))).toBe(true);
  });

  it("reports the script's own error message and its last output when it fails", async () => {
    const trainer = new HfTrainer({ launcher: "python", script: fakeScript, preflight: false });
    const run = trainer.train({
      base: "/models/tiny",
      examples: [{ prompt: "FAIL", completion: "x" }],
      output: join(work, "run-fail"),
    });
    await expect(run).rejects.toThrow(HfTrainingError);
    await expect(
      trainer.train({ base: "/m", examples: [{ prompt: "FAIL", completion: "x" }], output: join(work, "run-fail") }),
    ).rejects.toThrow(/training failed: an example has 9000 tokens/);
  });

  it("rejects an empty dataset before launching anything", async () => {
    const trainer = new HfTrainer({ launcher: "python", script: fakeScript, preflight: false });
    await expect(trainer.train({ base: "/m", examples: [], output: join(work, "run-empty") })).rejects.toThrow(
      ConfigError,
    );
  });

  it("says clearly when the Python interpreter does not exist", async () => {
    const trainer = new HfTrainer({ launcher: "python", python: join(work, "no-such-python"), preflight: false });
    await expect(trainer.train({ base: "/m", examples, output: join(work, "run-nopython") })).rejects.toThrow(
      /cannot run ".*no-such-python": not found/,
    );
    expect(() => checkPython(join(work, "no-such-python"))).toThrow(/not found/);
  });

  it("stops the training processes when the signal aborts", async () => {
    const slow = join(work, "slow.py");
    writeFileSync(slow, "import time\nprint('started', flush=True)\ntime.sleep(60)\n");
    const controller = new AbortController();
    const trainer = new HfTrainer({ launcher: "python", script: slow, preflight: false });
    const started = Date.now();
    const run = trainer.train({ base: "/m", examples, output: join(work, "run-abort"), signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await expect(run).rejects.toThrow(/interrupted/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

describe("checkPython", () => {
  it("names the missing packages and how to install them, or passes when all are installed", () => {
    const probe = spawnSync(
      "python3",
      [
        "-c",
        "import importlib.util as u; print(all(u.find_spec(n) for n in ['torch','transformers','peft','accelerate']))",
      ],
      { encoding: "utf8" },
    );
    if (probe.stdout.trim() === "True") expect(() => checkPython("python3")).not.toThrow();
    else
      expect(() => checkPython("python3")).toThrow(
        /lacks the Python packages .*pip install torch transformers peft accelerate/,
      );
  });
});

describe("python/train_lora.py label masking (runs without torch)", () => {
  it("masks the prompt, keeps a token merged across the boundary as completion, appends EOS", () => {
    // A toy tokenizer that merges "ab" into one token, so "...a" + "b..." merges across the boundary.
    const program = `
import json, sys
sys.path.insert(0, ${JSON.stringify(join(packageRoot(), "python"))})
from train_lora import tokenize_example
class Toy:
    eos_token_id = 3
    def __call__(self, text, add_special_tokens=True):
        ids, i = [1], 0
        while i < len(text):
            if text[i:i+2] == "ab":
                ids.append(50); i += 2
            else:
                ids.append(ord(text[i])); i += 1
        return {"input_ids": ids}
t = Toy()
out = {
    "plain": tokenize_example(t, "xy", "zw", 100, "error"),
    "merged": tokenize_example(t, "xa", "bc", 100, "error"),
    "truncated": tokenize_example(t, "xy", "zw", 4, "truncate"),
    "dropped": tokenize_example(t, "xy", "zw", 4, "drop"),
}
try:
    tokenize_example(t, "xy", "zw", 4, "error")
except ValueError as e:
    out["error"] = str(e)
print(json.dumps(out))
`;
    // No __pycache__ left in python/ by the import.
    const result = spawnSync("python3", ["-c", program], {
      encoding: "utf8",
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(result.stderr).toBe("");
    const out = JSON.parse(result.stdout);
    const [x, y, z, w, c] = [120, 121, 122, 119, 99]; // character codes of x y z w c
    expect(out.plain).toEqual({ input_ids: [1, x, y, z, w, 3], labels: [-100, -100, -100, z, w, 3] });
    // "xa"+"bc" tokenises as [1, x, 50(ab), c]: the merged token is predicted, not masked.
    expect(out.merged).toEqual({ input_ids: [1, x, 50, c, 3], labels: [-100, -100, 50, c, 3] });
    expect(out.truncated).toEqual({ input_ids: [1, x, y, z], labels: [-100, -100, -100, z] });
    expect(out.dropped).toBeNull();
    expect(out.error).toMatch(/6 tokens, more than --cutoff-len 4/);
  });
});

describe("python/train_lora.py step arithmetic (runs without torch)", () => {
  const run = (body: string) => {
    const program = `
import json, sys
sys.path.insert(0, ${JSON.stringify(join(packageRoot(), "python"))})
import train_lora as t
${body}`;
    const result = spawnSync("python3", ["-c", program], {
      encoding: "utf8",
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(result.stderr).toBe("");
    return JSON.parse(result.stdout);
  };

  it("weighs every label token of an optimizer step the same, however micro-batches split them", () => {
    const out = run(`
# Two processes x 2 micro-batches; token losses 1.0 everywhere except one long micro-batch at 3.0.
batches = [[[-100, 5, 6]], [[-100, 5, 6, 7, 8, 9, 10, 11]], [[-100, 5]], [[-100, -100, 6]]]
losses = [1.0, 3.0, 1.0, 1.0]
counts = [t.label_tokens(b) for b in batches]
window = sum(counts)
scale = t.backward_scale(window, 2, 2)
# What the gradient all-reduce sees: each process's backward-scaled sums / accumulation, averaged over processes.
contribution = sum(l * c * scale / 2 for l, c in zip(losses, counts)) / 2
print(json.dumps({"counts": counts, "contribution": contribution,
                  "token_mean": sum(l * c for l, c in zip(losses, counts)) / window}))
`);
    expect(out.counts).toEqual([2, 7, 1, 1]);
    expect(out.contribution).toBeCloseTo(out.token_mean, 12);
    expect(out.token_mean).toBeCloseTo((2 + 21 + 1 + 1) / 11, 12);
  });

  it("states DeepSpeed's batch sizes and clipping (0 turns clipping off)", () => {
    const out = run(`
print(json.dumps([t.deepspeed_settings({"gradient_clipping": "auto"}, 4, 16, 1.0),
                  t.deepspeed_settings({}, 2, 8, 0)]))
`);
    expect(out).toEqual([
      { gradient_clipping: 1, train_micro_batch_size_per_gpu: 4, train_batch_size: 64 },
      { gradient_clipping: 0, train_micro_batch_size_per_gpu: 2, train_batch_size: 16 },
    ]);
  });
});
