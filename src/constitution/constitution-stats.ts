/** Counts of a constitution and its lines of human annotation (the paper's "< 300 lines" claim, method-spec A.0). */
import type { ConstitutionContent } from "./constitution-schema.js";

export interface ConstitutionStats {
  principles: number;
  exemplars: number;
  /** User turns over all exemplars (first turns and follow-ups). */
  exemplarTurns: number;
  redTeamTypes: number;
  seedTasks: { total: number; withInput: number; withoutInput: number; classification: number };
  identityExchanges: number;
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
    /** The principles' negated texts, used only by SALMON; reported apart, not in `total`. */
    negatedPrinciples: number;
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
    annotationLines: {
      ...annotation,
      total: Object.values(annotation).reduce((sum, count) => sum + count, 0),
      negatedPrinciples: principles.length,
    },
  };
}

/** Non-empty lines of a text (0 for an absent one). */
function lines(text: string | undefined): number {
  if (text === undefined) return 0;
  return text.split("\n").filter((line) => line.trim() !== "").length;
}
