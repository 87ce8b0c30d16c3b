/** Evaluation: multiple-choice tasks over `score`, judge benchmarks over `chat`, and the public data formats. */
export { type BigBenchTask, type HhhItem, hhhCategories, loadBigBenchTask, loadHhh } from "./data/bigbench.js";
export { type CsvRow, parseCsv } from "./data/csv.js";
export {
  type FastChatAnswer,
  type FastChatJudgment,
  type FastChatQuestion,
  loadFastChatAnswers,
  loadFastChatJudgments,
  loadFastChatQuestions,
  writeJsonLines,
} from "./data/fastchat.js";
export { type ChoiceSet, loadTruthfulQa, type TruthfulQaItem } from "./data/truthfulqa.js";
export { type EvalContext, type EvalDefinition, type EvalOutput, evalPaths } from "./eval-definition.js";
export {
  compareEvalResults,
  type EvalAggregate,
  type EvalResult,
  type EvalRunOptions,
  type EvalTask,
  evalTasks,
  formatComparison,
  itemSetDifference,
  readEvalResult,
  writeEvalResult,
} from "./eval-result.js";
export { type EvalOutcome, type EvalSkip, evaluateItems, type SkippedItem } from "./evaluate-items.js";
export { type GeneratedAnswer, generateAnswers } from "./judges/generate-answers.js";
export { JudgeCache, judgeCacheKey } from "./judges/judge-cache.js";
export { judgePairwise, type PairwiseJudgment } from "./judges/judge-pairwise.js";
export { judgeSingle, type SingleJudgment } from "./judges/judge-single.js";
export { parseRating, parseVerdict } from "./judges/parse-judgment.js";
export {
  type PromptTemplate,
  plainPromptTemplate,
  promptTemplateFromAssistant,
  renderChatPrompt,
} from "./prompt-template.js";
export { hhhPrompt, runHhh } from "./tasks/hhh.js";
export { evalRegistry } from "./registry.js";
export { loadFewShotFile, runTruthfulQaMc, truthfulQaMcPrompt } from "./tasks/truthfulqa-mc.js";
export { runTruthfulQaTf, trueFalsePrompt } from "./tasks/truthfulqa-tf.js";
export { argmaxWithTieBreak, tieBreakRule } from "./tie-break.js";
