import { describe, expect, it } from "vitest";
import type { ProgressEvent } from "../progress/progress-event.js";
import {
  createProgressRenderer,
  formatBytes,
  formatDuration,
  type ProgressRendererOptions,
} from "./progress-renderer.js";

function fakeStream(isTTY: boolean) {
  const stream = {
    isTTY,
    columns: 100,
    text: "",
    write(chunk: string) {
      stream.text += chunk;
    },
  };
  return stream;
}

/** A renderer on a fake stream with a fake clock that advances `msPerEvent` before each event. */
function setup(mode: "live" | "plain", options: Partial<ProgressRendererOptions> = {}, msPerEvent = 0) {
  const stream = fakeStream(mode === "live");
  let clock = 1_000_000;
  const renderer = createProgressRenderer({
    stream,
    mode,
    color: false,
    logLevel: "info",
    now: () => clock,
    ...options,
  });
  const emit = (event: ProgressEvent) => {
    clock += msPerEvent;
    renderer.onProgress(event);
  };
  return { stream, emit, renderer };
}

function runStage(emit: (event: ProgressEvent) => void, total = 100, alreadyDone = 0) {
  emit({ type: "stage-start", stage: "self-align", total, done: alreadyDone });
  for (let done = alreadyDone + 1; done <= total; done++) {
    emit({ type: "record-end", stage: "self-align", done, total, kept: done % 4 !== 0 });
  }
  emit({ type: "stage-end", stage: "self-align", done: total, kept: 75, rejected: 25 });
}

describe("plain mode (not a TTY, or CI)", () => {
  it("prints start, a line every 5%, and the end, with no control characters", () => {
    const { stream, emit } = setup("plain", {}, 0);
    runStage(emit);
    const lines = stream.text.trimEnd().split("\n");
    expect(lines[0]).toBe("self-align: started, 100 items");
    expect(lines.at(-1)).toBe("self-align: done, 100 items, kept 75, rejected 25 in 0s");
    expect(lines).toHaveLength(1 + 20 + 1);
    expect(lines[1]).toBe("self-align: 5/100   5%  kept 4 rejected 1");
    expect(stream.text).not.toMatch(/[\r\x1b]/);
  });

  it("adds a line every 10 s even between 5% steps, with rate and ETA", () => {
    const { stream, emit } = setup("plain", {}, 4000);
    emit({ type: "stage-start", stage: "red-team", total: 1000 });
    for (let done = 1; done <= 6; done++)
      emit({ type: "record-end", stage: "red-team", done, total: 1000, kept: true });
    const lines = stream.text.trimEnd().split("\n");
    // 4 s per record (0.25/s): lines after 12 s (3 records) and 24 s (6 records); ETA 997 / 0.25 s = 1h06m.
    expect(lines).toEqual([
      "red-team: started, 1000 items",
      "red-team: 3/1000   0%  0.3/s  ETA 1h06m  kept 3 rejected 0",
      "red-team: 6/1000   0%  0.3/s  ETA 1h06m  kept 6 rejected 0",
    ]);
  });

  it("says when a stage resumes and prints warnings", () => {
    const { stream, emit } = setup("plain");
    emit({ type: "stage-start", stage: "self-align", total: 10, done: 4 });
    emit({ type: "message", level: "warn", text: "dropped a torn last line" });
    expect(stream.text).toBe(
      "self-align: started, 10 items (4 already done, resuming)\nwarning: dropped a torn last line\n",
    );
  });

  it("prints nothing at log level silent and only warnings at warn", () => {
    const silent = setup("plain", { logLevel: "silent" });
    runStage(silent.emit);
    silent.emit({ type: "message", level: "warn", text: "x" });
    expect(silent.stream.text).toBe("");
    const warn = setup("plain", { logLevel: "warn" });
    runStage(warn.emit);
    warn.emit({ type: "message", level: "info", text: "info" });
    warn.emit({ type: "message", level: "warn", text: "careful" });
    expect(warn.stream.text).toBe("warning: careful\n");
  });
});

describe("live mode (a TTY)", () => {
  it("redraws one line in place with bar, count, rate, ETA and kept/rejected, then ends it", () => {
    const { stream, emit } = setup("live", { liveRedrawMs: 0 }, 500);
    runStage(emit, 10);
    const frames = stream.text.split("\r").filter((frame) => frame !== "");
    const half = frames.find((frame) => frame.includes(" 5/10 "));
    expect(half).toBe(
      `self-align ${"█".repeat(12)}${"░".repeat(12)} 5/10  50%  2.0/s  ETA 3s  kept 4 rejected 1\x1b[K`,
    );
    expect(stream.text.endsWith("\r\x1b[Kself-align: done, 10 items, kept 75, rejected 25 in 6s\n")).toBe(true);
    expect(stream.text.split("\n")).toHaveLength(2);
  });

  it("throttles redraws", () => {
    const { stream, emit } = setup("live", { liveRedrawMs: 100 }, 10);
    runStage(emit, 100);
    const frames = stream.text
      .split("\r")
      .filter((frame) => frame.startsWith("self-align █") || frame.startsWith("self-align ░"));
    // One draw at start plus one per 100 ms of the 1 s run.
    expect(frames.length).toBeGreaterThanOrEqual(9);
    expect(frames.length).toBeLessThanOrEqual(12);
  });

  it("prints messages above the bar and redraws it", () => {
    const { stream, emit } = setup("live", { liveRedrawMs: 0 });
    emit({ type: "stage-start", stage: "s", total: 4 });
    emit({ type: "message", level: "info", text: "loaded model" });
    expect(stream.text.endsWith("\r\x1b[Kloaded model\n\rs ░░░░░░░░░░░░░░░░░░░░░░░░ 0/4   0%\x1b[K")).toBe(true);
  });

  it("colours the bar unless colour is off, and fits the terminal width", () => {
    const { stream, emit } = setup("live", { liveRedrawMs: 0, color: true });
    stream.columns = 40;
    emit({ type: "stage-start", stage: "s", total: 4 });
    emit({ type: "record-end", stage: "s", done: 2, total: 4, kept: true });
    const last = stream.text.split("\r").at(-1)!;
    expect(last).toContain("\x1b[32m████████████\x1b[0m");
    const visible = last.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
    expect(visible.length).toBeLessThan(40);
  });

  it("renders training steps and downloads", () => {
    const { stream, emit, renderer } = setup("live", { liveRedrawMs: 0 }, 1000);
    emit({ type: "train-step", step: 1, totalSteps: 2, loss: 2.5, learningRate: 0.0002, tokensPerSecond: 1234.4 });
    expect(stream.text).toContain("train ████████████░░░░░░░░░░░░ 1/2  50%");
    expect(stream.text).toContain("loss 2.5000  lr 2.00e-4  1234 tok/s");
    emit({ type: "train-step", step: 2, totalSteps: 2, loss: 1.25, learningRate: 0.0001 });
    expect(stream.text).toContain("train: done, 2 steps in 1s, final loss 1.2500  lr 1.00e-4\n");
    emit({
      type: "download-progress",
      file: "/m/model.gguf",
      downloadedBytes: 1024 * 1024,
      totalBytes: 4 * 1024 * 1024,
    });
    expect(stream.text).toContain("download model.gguf ██████░░░░░░░░░░░░░░░░░░ 1.0 MB/4.0 MB  25%");
    renderer.close();
    expect(stream.text.endsWith("\n")).toBe(true);
  });

  it("names the stage that trains, one bar per stage", () => {
    const { stream, emit } = setup("plain", {}, 1000);
    emit({ type: "train-step", stage: "engrave", step: 1, totalSteps: 1, loss: 2, learningRate: 0.0001 });
    emit({ type: "train-eval", stage: "verbose-clone", step: 1, totalSteps: 1, loss: 1.5 });
    emit({ type: "train-step", stage: "verbose-clone", step: 1, totalSteps: 1, loss: 1, learningRate: 0.0001 });
    expect(stream.text).toContain("engrave train: done, 1 steps in");
    expect(stream.text).toContain("verbose-clone train: held-out at step 1/1: loss 1.5000");
    expect(stream.text).toContain("verbose-clone train: done, 1 steps in");
    expect(stream.text).not.toMatch(/^train:/m);
  });
});

describe("mode", () => {
  const env = { ci: false, noColor: true, cacheDir: "/tmp", logLevel: "info" as const, offline: false };
  const draw = (isTTY: boolean, ci: boolean) => {
    const stream = fakeStream(isTTY);
    const renderer = createProgressRenderer({ stream, env: { ...env, ci }, now: () => 0 });
    renderer.onProgress({ type: "stage-start", stage: "s", total: 2 });
    return stream.text;
  };

  it("draws a live bar only on a TTY outside CI", () => {
    expect(draw(true, false)).toBe("\rs ░░░░░░░░░░░░░░░░░░░░░░░░ 0/2   0%\x1b[K");
    expect(draw(true, true)).toBe("s: started, 2 items\n");
    expect(draw(false, false)).toBe("s: started, 2 items\n");
  });
});

describe("formatting", () => {
  it("formats durations and sizes", () => {
    expect(formatDuration(42)).toBe("42s");
    expect(formatDuration(67)).toBe("1m07s");
    expect(formatDuration(7380)).toBe("2h03m");
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe("?");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
  });
});
