/**
 * Every evaluation, in the order `selfalign eval --help` lists them. The CLI makes one subcommand per definition;
 * adding an evaluation is one definition and one line here.
 */
import { compareEval } from "./compare.js";
import type { EvalDefinition } from "./eval-definition.js";
import { generateAnswersEval } from "./judges/generate-answers.js";
import { judgePairwiseEval } from "./judges/judge-pairwise.js";
import { judgeSingleEval } from "./judges/judge-single.js";
import { hhhEval } from "./tasks/hhh.js";
import { truthfulQaMc1Eval, truthfulQaMc2Eval } from "./tasks/truthfulqa-mc.js";
import { truthfulQaTfEval } from "./tasks/truthfulqa-tf.js";

export const evalRegistry = [
  truthfulQaMc1Eval,
  truthfulQaMc2Eval,
  truthfulQaTfEval,
  hhhEval,
  generateAnswersEval,
  judgeSingleEval,
  judgePairwiseEval,
  compareEval,
] as const satisfies readonly EvalDefinition[];
