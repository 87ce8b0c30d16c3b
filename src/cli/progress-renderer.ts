/**
 * Renders the library's progress events for people: a live one-line bar (count/total, rate, ETA, kept/rejected)
 * on a terminal, and throttled plain log lines (start, every 5% or 10 s, end) when not a TTY or when CI is set.
 */
import { basename } from "node:path";
import { type LogLevel, readEnv, type SelfalignEnv } from "../config/env.js";
import type { ProgressEvent, ProgressListener } from "../progress/progress-event.js";

/** A training's label in progress lines: "engrave train", or "train" for a plain `selfalign train`. */
const trainLabel = (event: { stage?: string }) => (event.stage ? `${event.stage} train` : "train");

/** The part of a writable stream the renderer uses (process.stderr, or a fake in tests). */
export interface RenderStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressRendererOptions {
  /** Default process.stderr. */
  stream?: RenderStream;
  /** CI, NO_COLOR and SELFALIGN_LOG; default read from the environment. */
  env?: SelfalignEnv;
  /** Default: "live" when `stream.isTTY` and CI is not set, else "plain". */
  mode?: "live" | "plain";
  /** Default from NO_COLOR. Colours are only used in live mode. */
  color?: boolean;
  /** Default from SELFALIGN_LOG: silent prints nothing, warn only warnings, debug adds every rejection. */
  logLevel?: LogLevel;
  /** Clock in milliseconds (tests pass a fake). Default Date.now. */
  now?: () => number;
  /** Plain mode: print a line each time progress crosses this fraction. Default 0.05. */
  plainEveryFraction?: number;
  /** Plain mode: print a line at least this often while working, in milliseconds. Default 10000. */
  plainEveryMs?: number;
  /** Live mode: redraw at most this often, in milliseconds. Default 100. */
  liveRedrawMs?: number;
}

export interface ProgressRenderer {
  onProgress: ProgressListener;
  /** Finish the live line (e.g. after Ctrl+C) so later output starts on a fresh line. */
  close(): void;
}

interface Task {
  label: string;
  unit: "items" | "steps" | "bytes";
  total?: number;
  done: number;
  /** Progress already done when this task started (resumed work), excluded from the rate. */
  doneAtStart: number;
  startedAt: number;
  kept: number;
  rejected: number;
  detail: string;
  lastLineAt: number;
  lastLineFraction: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatRate(perSecond: number): string {
  return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1);
}

export function createProgressRenderer(options: ProgressRendererOptions = {}): ProgressRenderer {
  const stream: RenderStream = options.stream ?? process.stderr;
  const env = options.env ?? (options.mode && options.color !== undefined && options.logLevel ? undefined : readEnv());
  const mode = options.mode ?? (stream.isTTY && !env?.ci ? "live" : "plain");
  const color = options.color ?? !env?.noColor;
  const logLevel = options.logLevel ?? env?.logLevel ?? "info";
  const now = options.now ?? Date.now;
  const everyFraction = options.plainEveryFraction ?? 0.05;
  const everyMs = options.plainEveryMs ?? 10_000;
  const redrawMs = options.liveRedrawMs ?? 100;
  const tasks = new Map<string, Task>();
  let liveLine = false;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let current: Task | undefined;

  const startTask = (key: string, label: string, unit: Task["unit"], total?: number, done = 0): Task => {
    const task: Task = {
      label,
      unit,
      total,
      done,
      doneAtStart: done,
      startedAt: now(),
      kept: 0,
      rejected: 0,
      detail: "",
      lastLineAt: now(),
      lastLineFraction: total ? done / total : 0,
    };
    tasks.set(key, task);
    return task;
  };

  const amount = (task: Task, value: number) => (task.unit === "bytes" ? formatBytes(value) : String(value));

  const figures = (task: Task): string[] => {
    const parts: string[] = [];
    const elapsed = (now() - task.startedAt) / 1000;
    const rate = elapsed > 0 ? (task.done - task.doneAtStart) / elapsed : 0;
    if (rate > 0) {
      parts.push(task.unit === "bytes" ? `${formatBytes(rate)}/s` : `${formatRate(rate)}/s`);
      if (task.total !== undefined) parts.push(`ETA ${formatDuration((task.total - task.done) / rate)}`);
    }
    if (task.unit === "items" && task.kept + task.rejected > 0)
      parts.push(`kept ${task.kept} rejected ${task.rejected}`);
    if (task.detail) parts.push(task.detail);
    return parts;
  };

  const counter = (task: Task): string => {
    if (task.total === undefined) return amount(task, task.done);
    const percent = task.total > 0 ? Math.floor((100 * task.done) / task.total) : 100;
    return `${amount(task, task.done)}/${amount(task, task.total)} ${String(percent).padStart(3)}%`;
  };

  const write = (text: string) => {
    if (logLevel !== "silent") stream.write(text);
  };

  const clearLive = () => {
    if (liveLine) write("\r\x1b[K");
    liveLine = false;
  };

  const drawLive = (task: Task, force = false) => {
    if (!force && now() - lastDraw < redrawMs) return;
    lastDraw = now();
    const width = 24;
    let filled = -1;
    if (task.total !== undefined && task.total > 0)
      filled = Math.min(width, Math.round((width * task.done) / task.total));
    const bar = filled >= 0 ? ` ${"█".repeat(filled)}${"░".repeat(width - filled)}` : "";
    let rest = [` ${counter(task)}`, ...figures(task)].join("  ");
    // Keep the line on one terminal row, or every redraw would leave a stale row behind.
    const room = (stream.columns ?? 120) - 1 - task.label.length - bar.length;
    if (rest.length > room) rest = rest.slice(0, Math.max(0, room));
    const coloured = color && filled > 0 ? ` \x1b[32m${"█".repeat(filled)}\x1b[0m${"░".repeat(width - filled)}` : bar;
    write(`\r${task.label}${coloured}${rest}\x1b[K`);
    liveLine = true;
  };

  const printLine = (text: string) => {
    if (mode === "live") clearLive();
    write(`${text}\n`);
    if (mode === "live" && current) drawLive(current, true);
  };

  const update = (task: Task, force: boolean) => {
    current = task;
    if (mode === "live") {
      drawLive(task, force);
      return;
    }
    const fraction = task.total ? task.done / task.total : 0;
    const crossed =
      task.total !== undefined &&
      Math.floor(fraction / everyFraction) > Math.floor(task.lastLineFraction / everyFraction);
    if (force || crossed || now() - task.lastLineAt >= everyMs) {
      task.lastLineAt = now();
      task.lastLineFraction = fraction;
      write(`${[`${task.label}: ${counter(task)}`, ...figures(task)].join("  ")}\n`);
    }
  };

  const endTask = (key: string, summary: string) => {
    const task = tasks.get(key);
    tasks.delete(key);
    if (task && current === task) current = undefined;
    if (mode === "live") clearLive();
    write(`${summary}\n`);
  };

  const onProgress = (event: ProgressEvent): void => {
    switch (event.type) {
      case "stage-start": {
        const task = startTask(`stage:${event.stage}`, event.stage, "items", event.total, event.done ?? 0);
        if (logLevel === "warn") return;
        if (mode === "live") {
          update(task, true);
          return;
        }
        const resumed = event.done ? ` (${event.done} already done, resuming)` : "";
        write(`${event.stage}: started${event.total !== undefined ? `, ${event.total} items` : ""}${resumed}\n`);
        return;
      }
      case "record-end": {
        const key = `stage:${event.stage}`;
        const task = tasks.get(key) ?? startTask(key, event.stage, "items", event.total);
        task.done = event.done;
        if (event.total !== undefined) task.total = event.total;
        // The folder's record counts when the stage gives them (what the summary prints); else inputs kept/rejected.
        if (event.records) {
          task.kept = event.records.kept;
          task.rejected = event.records.rejected;
        } else if (event.kept === true) task.kept++;
        else if (event.kept === false) task.rejected++;
        if (logLevel === "debug" && event.kept === false && event.reason)
          printLine(`${event.stage}: rejected (${event.reason})`);
        if (logLevel !== "warn") update(task, false);
        return;
      }
      case "stage-end": {
        const key = `stage:${event.stage}`;
        const task = tasks.get(key);
        const seconds = task ? (now() - task.startedAt) / 1000 : undefined;
        const counts =
          event.kept !== undefined || event.rejected !== undefined
            ? `, kept ${event.kept ?? 0}, rejected ${event.rejected ?? 0}`
            : "";
        if (logLevel === "warn") {
          tasks.delete(key);
          return;
        }
        endTask(
          key,
          `${event.stage}: done, ${event.done} items${counts}${seconds !== undefined ? ` in ${formatDuration(seconds)}` : ""}`,
        );
        return;
      }
      case "train-step": {
        const label = trainLabel(event);
        const key = `train:${label}`;
        const task = tasks.get(key) ?? startTask(key, label, "steps", event.totalSteps, event.step - 1);
        task.done = event.step;
        task.total = event.totalSteps;
        const speed = event.tokensPerSecond !== undefined ? `  ${Math.round(event.tokensPerSecond)} tok/s` : "";
        const pairs = event.accuracy === undefined ? "" : `  ${describeMetrics(event).replace(/^loss \S+ /, "")}`;
        task.detail = `loss ${event.loss.toFixed(4)}  lr ${event.learningRate.toExponential(2)}${pairs}${speed}`;
        if (logLevel === "warn") return;
        if (event.step >= event.totalSteps) {
          const seconds = (now() - task.startedAt) / 1000;
          endTask(key, `${label}: done, ${event.totalSteps} steps in ${formatDuration(seconds)}, final ${task.detail}`);
        } else update(task, false);
        return;
      }
      case "download-progress": {
        const key = `download:${event.file}`;
        const task = tasks.get(key) ?? startTask(key, `download ${basename(event.file)}`, "bytes", event.totalBytes);
        task.done = event.downloadedBytes;
        if (event.totalBytes !== undefined) task.total = event.totalBytes;
        if (logLevel === "warn") return;
        if (task.total !== undefined && task.done >= task.total) {
          endTask(key, `${task.label}: done, ${formatBytes(task.done)}`);
        } else update(task, false);
        return;
      }
      case "train-eval": {
        if (logLevel === "warn") return;
        printLine(
          `${trainLabel(event)}: held-out at step ${event.step}/${event.totalSteps}: ${describeMetrics(event)}`,
        );
        return;
      }
      case "request-retry": {
        // A warning: retries cost time and, on a paid API, money. One line each, with the reason.
        printLine(
          `warning: retry ${event.attempt}/${event.maxRetries} in ${(event.delayMs / 1000).toFixed(1)}s: ${event.reason}`,
        );
        return;
      }
      case "message": {
        if (event.level === "info" && logLevel === "warn") return;
        printLine(event.level === "warn" ? `warning: ${event.text}` : event.text);
        return;
      }
    }
  };

  return {
    onProgress,
    close() {
      if (mode === "live" && liveLine) write("\n");
      liveLine = false;
    },
  };
}

/** "loss 0.6931 accuracy 0.50 margin 0.000" (accuracy and margin only for the pairs kinds). */
export function describeMetrics(metrics: { loss: number; accuracy?: number; margin?: number }): string {
  const parts = [`loss ${metrics.loss.toFixed(4)}`];
  if (metrics.accuracy !== undefined) parts.push(`accuracy ${metrics.accuracy.toFixed(2)}`);
  if (metrics.margin !== undefined) parts.push(`margin ${metrics.margin.toFixed(3)}`);
  return parts.join(" ");
}
