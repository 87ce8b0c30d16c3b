/** Counts of a constitution and its lines of human annotation (the paper's "< 300 lines" claim, method-spec A.0). */
import type { ConstitutionContent } from "./constitution-schema.js";

/** SALMON's lines of human annotation, by part (zero everywhere without salmon.yaml). */
export interface SalmonAnnotationLines {
  /** Own definitions and negative definitions, plus the negated texts of the rules reused. */
  rewardPrinciples: number;
  /** Own definitions (a reused rule's text is already counted under SELF-ALIGN). */
  rlPrinciples: number;
  interventions: number;
  total: number;
}

export interface ConstitutionStats {
  principles: number;
  exemplars: number;
  /** User turns over all exemplars (first turns and follow-ups). */
  exemplarTurns: number;
  redTeamTypes: number;
  seedTasks: { total: number; withInput: number; withoutInput: number; classification: number };
  identityExchanges: number;
  /** SALMON's principles: how many, and how many of them reuse a SELF-ALIGN rule. */
  salmon: {
    rewardPrinciples: number;
    rewardPrinciplesReused: number;
    rlPrinciples: number;
    rlPrinciplesReused: number;
    interventions: number;
  };
  /** Lines of human annotation, by part, as defined in `constitutionStats`. */
  annotationLines: {
    seedTasks: number;
    redTeamQuestions: number;
    principles: number;
    exemplars: number;
    prompts: number;
    identity: number;
    /** Sum of the parts above: what SELF-ALIGN needs. */
    total: number;
    /** The principles' negated texts that no SALMON principle reuses: written, used by nothing, counted nowhere. */
    unusedNegatedTexts: number;
    salmon: SalmonAnnotationLines;
    /**
     * SELF-ALIGN's total plus SALMON's: what the constitution holds. (I-SHEEP's rating scales are written into its
     * stage code; `selfalign constitution stats` adds them, from `isheepAnnotationLines`.)
     */
    allMethods: number;
  };
}

/**
 * Count a constitution. Lines of human annotation are counted the way the paper counts its supervision
 * (195 seed prompts + 16 principles + 5 exemplars in under 300 lines):
 * - one line per seed task (its instruction and input form one prompt) and one per red-team seed question;
 * - one line per principle (its rule text);
 * - for exemplars, every non-empty line of every text a person wrote: each turn's query, input, thoughts and
 *   answer, and the closing pair;
 * - every non-empty line of the verbose and concise prompts and of the identity questions and answers.
 * SALMON's (salmon.yaml) by the same rule: one line per text a person wrote for it. A reward principle of its own is
 * two (definition and negative definition); one that reuses a SELF-ALIGN rule is one, the rule's negated text (its
 * text is counted under SELF-ALIGN). An RL principle of its own is one; a reused one adds no text. One line per
 * intervention. The judge's and the reviewer's prompt templates are code, as SELF-ALIGN's meta-prompt layout is.
 * Lines are counted in the loaded texts, not in the YAML, so wrapping a long line in the file (a folded `>`
 * block) does not change the count; a line break inside a literal `|` block does.
 */
export function constitutionStats(constitution: ConstitutionContent): ConstitutionStats {
  const { principles, exemplars, redTeamTypes, seedTasks, assistant } = constitution;
  const exemplarLines = exemplars.reduce(
    (sum, exemplar) =>
      sum +
      exemplar.turns.reduce(
        (turnSum, turn) => turnSum + lines(turn.user) + lines(turn.input) + lines(turn.thoughts) + lines(turn.answer),
        0,
      ) +
      lines(exemplar.closing.user) +
      lines(exemplar.closing.reply),
    0,
  );
  const annotation = {
    seedTasks: seedTasks.length,
    redTeamQuestions: redTeamTypes.length,
    principles: principles.length,
    exemplars: exemplarLines,
    prompts: lines(assistant.verbosePrompt) + lines(assistant.concisePrompt),
    identity: assistant.identity.reduce((sum, exchange) => sum + lines(exchange.user) + lines(exchange.answer), 0),
  };
  const withInput = seedTasks.filter((task) => task.input !== undefined).length;
  const total = Object.values(annotation).reduce((sum, count) => sum + count, 0);
  const salmon = constitution.salmon;
  const reward = salmon?.rewardPrinciples ?? [];
  const rl = salmon?.rlPrinciples ?? [];
  const reusedNegated = new Set(reward.flatMap((principle) => (principle.principle ? [principle.principle] : [])));
  const salmonLines = {
    rewardPrinciples: reward.reduce((sum, principle) => sum + (principle.principle ? 1 : 2), 0),
    rlPrinciples: rl.filter((principle) => !principle.principle).length,
    interventions: salmon?.interventions.length ?? 0,
  };
  const salmonTotal = salmonLines.rewardPrinciples + salmonLines.rlPrinciples + salmonLines.interventions;
  return {
    principles: principles.length,
    exemplars: exemplars.length,
    exemplarTurns: exemplars.reduce((sum, exemplar) => sum + exemplar.turns.length, 0),
    redTeamTypes: redTeamTypes.length,
    seedTasks: {
      total: seedTasks.length,
      withInput,
      withoutInput: seedTasks.length - withInput,
      classification: seedTasks.filter((task) => task.isClassification).length,
    },
    identityExchanges: assistant.identity.length,
    salmon: {
      rewardPrinciples: reward.length,
      rewardPrinciplesReused: reward.filter((principle) => principle.principle).length,
      rlPrinciples: rl.length,
      rlPrinciplesReused: rl.filter((principle) => principle.principle).length,
      interventions: salmon?.interventions.length ?? 0,
    },
    annotationLines: {
      ...annotation,
      total,
      unusedNegatedTexts: principles.filter((principle) => !reusedNegated.has(principle.id)).length,
      salmon: { ...salmonLines, total: salmonTotal },
      allMethods: total + salmonTotal,
    },
  };
}

/** Non-empty lines of a text (0 for an absent one). */
function lines(text: string | undefined): number {
  if (text === undefined) return 0;
  return text.split("\n").filter((line) => line.trim() !== "").length;
}
