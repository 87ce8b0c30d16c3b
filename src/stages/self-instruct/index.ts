export {
  defaultTaskBlacklist,
  type FilterRejection,
  filterSelfInstructTask,
  type SelfInstructFilterName,
  type SelfInstructFilterOptions,
  selfInstructFilterNames,
} from "./filters.js";
export { type ParsedTask, type ParseSelfInstructResult, parseSelfInstruct } from "./parse.js";
export {
  buildSelfInstructPrompt,
  renderDemoInstruction,
  type SelfInstructDemo,
  selfInstructPreamble,
} from "./prompt.js";
export {
  type RunSelfInstructOptions,
  type RunSelfInstructResult,
  runSelfInstruct,
  type SelfInstructRecord,
  selfInstructSamplingDefaults,
  selfInstructStage,
} from "./run.js";
