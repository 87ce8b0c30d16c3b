export { isheepGroup, isheepOptionsSchema, isheepStopBefore, stopSignals, type StopSignal } from "./definition.js";
export {
  filterGeneratedTask,
  ruleFilterPair,
  promptFilterNames,
  ruleFilterNames,
  type RuleFilterName,
} from "./filters.js";
export { type ParsedRating, parseSelfRating } from "./parse-rating.js";
export {
  answerPrompt,
  isheepAnnotationLines,
  type RatingAspect,
  ratingAspects,
  ratingPrompt,
  renderTask,
} from "./prompt.js";
export { isheepStages } from "./stage-names.js";
export { trainVariants, type TrainVariant } from "./train-stage.js";
