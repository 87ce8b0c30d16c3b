import { describe, expect, it } from "vitest";
import { parseTrainerLine } from "./progress-parser.js";

describe("parseTrainerLine", () => {
  it("reads a train-step line", () => {
    expect(
      parseTrainerLine(
        '{"event": "train-step", "step": 3, "total_steps": 10, "loss": 2.5, "lr": 0.0002, "grad_norm": 0.9, "tokens": 512, "tokens_per_second": 1000.5}',
      ),
    ).toEqual({
      kind: "train-step",
      step: 3,
      totalSteps: 10,
      loss: 2.5,
      learningRate: 0.0002,
      gradientNorm: 0.9,
      tokens: 512,
      tokensPerSecond: 1000.5,
    });
  });

  it("reads the pair metrics of train_pairs.py: accuracy and margin per step, and held-out train-eval lines", () => {
    expect(
      parseTrainerLine(
        '{"event":"train-step","step":2,"total_steps":4,"loss":0.5,"lr":0.001,"accuracy":0.75,"margin":1.5}',
      ),
    ).toMatchObject({ kind: "train-step", step: 2, accuracy: 0.75, margin: 1.5 });
    expect(
      parseTrainerLine(
        '{"event":"train-eval","step":8,"total_steps":64,"loss":0.37,"accuracy":0.875,"margin":1.07,"examples":64}',
      ),
    ).toEqual({ kind: "train-eval", step: 8, totalSteps: 64, loss: 0.37, accuracy: 0.875, margin: 1.07, examples: 64 });
    expect(parseTrainerLine('{"event":"train-eval","loss":1}')).toMatchObject({ kind: "log" });
  });

  it("reads a diverged (null) loss as NaN and leaves absent optional fields undefined", () => {
    const line = parseTrainerLine(
      '{"event":"train-step","step":1,"total_steps":2,"loss":null,"lr":0.1,"grad_norm":null}',
    );
    expect(line.kind).toBe("train-step");
    if (line.kind !== "train-step") return;
    expect(line.loss).toBeNaN();
    expect(line.gradientNorm).toBeUndefined();
    expect(line.tokensPerSecond).toBeUndefined();
  });

  it("reads start, end and error events", () => {
    expect(parseTrainerLine('{"event":"train-start","total_steps":5,"examples":9,"processes":2}')).toEqual({
      kind: "train-start",
      totalSteps: 5,
      examples: 9,
      processes: 2,
    });
    expect(parseTrainerLine('{"event":"train-end","steps":5,"final_loss":1.25,"output":"/o"}')).toEqual({
      kind: "train-end",
      steps: 5,
      finalLoss: 1.25,
      output: "/o",
    });
    expect(parseTrainerLine('{"event":"error","message":"no examples"}')).toEqual({
      kind: "error",
      message: "no examples",
    });
  });

  it.each([
    "Loading checkpoint shards: 100%",
    "{not json",
    '{"event":"train-step","step":"3","loss":1,"lr":1}',
    '{"event":"something-else"}',
    "[1, 2]",
    "",
  ])("treats %j as a log line", (text) => {
    expect(parseTrainerLine(text)).toEqual({ kind: "log", text });
  });
});
