export {
  buildLeakageBlacklist,
  endOfTurnMarker,
  type FilterSelfAlignContext,
  filterSelfAlignCompletion,
  type SelfAlignFilterName,
  type SelfAlignFilterOptions,
  type SelfAlignFilterResult,
  type SelfAlignOutput,
  selfAlignFilterNames,
} from "./filters.js";
export { citedPrinciples, type SplitCompletion, splitThoughtsAndAnswer } from "./parse.js";
export { countPrincipleUsage, type PrincipleUsage } from "./principle-usage.js";
export {
  buildSelfAlignMetaPrompt,
  buildSelfAlignPrompt,
  type SelfAlignConstitution,
  type TurnMarkers,
  turnMarkers,
} from "./prompt.js";
export {
  type RunSelfAlignOptions,
  type RunSelfAlignResult,
  runSelfAlign,
  type SelfAlignInput,
  type SelfAlignRecord,
  selfAlignSamplingDefaults,
  selfAlignStage,
} from "./run.js";
