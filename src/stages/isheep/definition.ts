/**
 * I-SHEEP as data (method-spec part C, Algorithm 1): a group of seven stages run round after round, each round's
 * model the base plus the previous round's adapter (the base in round 1) — write prompts, answer them, rule-filter,
 * self-assess, keep the well-rated, train a new adapter, evaluate. Off by default (SELF-ALIGN is the default run);
 * `stages.isheep: { skip: false, rounds: N }` or `selfalign isheep` turns it on. The group's own options only say how
 * many rounds run: `rounds`, and early stopping when the kept rate or the eval score stops improving.
 */
import { z } from "zod";
import type { GroupRoundContext, StageGroup } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import { answersDefinition } from "./answers-stage.js";
import { evalDefinition } from "./eval-stage.js";
import { filterDefinition } from "./filter-stage.js";
import { keepDefinition } from "./keep-stage.js";
import { promptsDefinition } from "./prompts-stage.js";
import { rateDefinition } from "./rate-stage.js";
import { isheepGroupName, isheepStages } from "./stage-names.js";
import { trainDefinition } from "./train-stage.js";

/** The figures early stopping can watch. */
export const stopSignals = ["kept-rate", "eval-score"] as const;
export type StopSignal = (typeof stopSignals)[number];

export const isheepOptionsSchema = z.strictObject({
  rounds: positiveInt.default(2).describe("rounds to run (the paper: small models gain for about 2, 72B for 5)"),
  stopOn: z
    .array(z.enum(stopSignals))
    .default([])
    .describe("stop early when one of these stops improving (JSON list: kept-rate, eval-score)"),
  minGain: z.number().min(0).default(0).describe("a round must beat the one before by more than this to go on"),
});

const finite = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);

/** A round's figure for a signal, and what it is compared with (round 0 is the base, for the eval score only). */
async function figureOf(signal: StopSignal, round: number, context: GroupRoundContext): Promise<number | undefined> {
  if (signal === "kept-rate") {
    if (round < 1) return undefined;
    const value = (await context.manifest(isheepStages.keep, round))?.extra.keptRate;
    return finite(value) ? value : undefined;
  }
  const value =
    round === 0
      ? (await context.manifest(isheepStages.eval, 1))?.extra.baseScore
      : (await context.manifest(isheepStages.eval, round))?.extra.score;
  return finite(value) ? value : undefined;
}

const roundName = (round: number) => (round === 0 ? "the base model" : `round ${round}`);

/**
 * Stop before `round` when the last round's figure did not beat the one before by more than `minGain` (a signal
 * with a missing figure, e.g. the eval turned off, never stops the group).
 */
export async function isheepStopBefore(round: number, context: GroupRoundContext): Promise<string | undefined> {
  const options = isheepOptionsSchema.parse(context.options);
  for (const signal of options.stopOn) {
    const last = await figureOf(signal, round - 1, context);
    const before = await figureOf(signal, round - 2, context);
    if (last === undefined || before === undefined) continue;
    if (last <= before + options.minGain) {
      const label = signal === "kept-rate" ? "kept rate" : "eval score";
      return `stopped before round ${round}: ${roundName(round - 1)}'s ${label} ${last.toFixed(3)} did not beat ${roundName(round - 2)}'s ${before.toFixed(3)} by more than ${options.minGain}`;
    }
  }
  return undefined;
}

export const isheepGroup: StageGroup = {
  kind: "group",
  name: isheepGroupName,
  summary: "I-SHEEP: rounds of prompts -> answers -> rule filter -> self-assessment -> keep -> train -> eval (part C).",
  stages: [
    promptsDefinition,
    answersDefinition,
    filterDefinition,
    rateDefinition,
    keepDefinition,
    trainDefinition,
    evalDefinition,
  ],
  options: isheepOptionsSchema,
  amountOptions: ["rounds", "stopOn", "minGain"],
  adapterFrom: isheepStages.train,
  skipByDefault: true,
  stopBefore: isheepStopBefore,
};
