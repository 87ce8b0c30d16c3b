/**
 * Parses the JSON-lines protocol of python/train_lora.py and train_pairs.py (one object per stdout line, with an
 * "event" field).
 * Lines that are not protocol events (library logs, warnings) are returned as `log`, never as errors.
 */

export type TrainerLine =
  | { kind: "train-start"; totalSteps: number; examples?: number; processes?: number }
  | {
      kind: "train-step";
      step: number;
      totalSteps: number;
      loss: number;
      learningRate: number;
      gradientNorm?: number;
      tokens?: number;
      tokensPerSecond?: number;
      /** Pair kinds: share of the step's pairs ranked right, and the mean chosen-minus-rejected reward. */
      accuracy?: number;
      margin?: number;
    }
  | {
      kind: "train-eval";
      step: number;
      totalSteps: number;
      loss: number;
      examples: number;
      accuracy?: number;
      margin?: number;
    }
  | { kind: "train-end"; steps: number; finalLoss: number; output?: string }
  | { kind: "error"; message: string }
  | { kind: "log"; text: string };

const finite = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);
const optional = (value: unknown): number | undefined => (finite(value) ? value : undefined);

/** One line of the script's stdout to a typed record. */
export function parseTrainerLine(line: string): TrainerLine {
  const text = line.trim();
  if (!text.startsWith("{")) return { kind: "log", text: line };
  let record: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return { kind: "log", text: line };
    record = parsed as Record<string, unknown>;
  } catch {
    return { kind: "log", text: line };
  }
  switch (record.event) {
    case "train-start":
      if (!finite(record.total_steps)) break;
      return {
        kind: "train-start",
        totalSteps: record.total_steps,
        examples: optional(record.examples),
        processes: optional(record.processes),
      };
    case "train-step": {
      // A diverged loss arrives as null (JSON has no NaN) and is reported as NaN.
      if (!finite(record.step) || !finite(record.lr) || !(finite(record.loss) || record.loss === null)) break;
      return {
        kind: "train-step",
        step: record.step,
        totalSteps: finite(record.total_steps) ? record.total_steps : record.step,
        loss: finite(record.loss) ? record.loss : Number.NaN,
        learningRate: record.lr,
        gradientNorm: optional(record.grad_norm),
        tokens: optional(record.tokens),
        tokensPerSecond: optional(record.tokens_per_second),
        ...(finite(record.accuracy) ? { accuracy: record.accuracy } : {}),
        ...(finite(record.margin) ? { margin: record.margin } : {}),
      };
    }
    case "train-eval":
      if (!finite(record.step) || !(finite(record.loss) || record.loss === null)) break;
      return {
        kind: "train-eval",
        step: record.step,
        totalSteps: finite(record.total_steps) ? record.total_steps : record.step,
        loss: finite(record.loss) ? record.loss : Number.NaN,
        examples: finite(record.examples) ? record.examples : 0,
        ...(finite(record.accuracy) ? { accuracy: record.accuracy } : {}),
        ...(finite(record.margin) ? { margin: record.margin } : {}),
      };
    case "train-end":
      return {
        kind: "train-end",
        steps: finite(record.steps) ? record.steps : 0,
        finalLoss: finite(record.final_loss) ? record.final_loss : Number.NaN,
        output: typeof record.output === "string" ? record.output : undefined,
      };
    case "error":
      return { kind: "error", message: typeof record.message === "string" ? record.message : text };
  }
  return { kind: "log", text: line };
}
