export { type CheckConstitutionOptions, checkConstitution } from "./check-constitution.js";
// canonicalJson lives with record ids (one implementation for ids and hashes); re-exported here as before.
export { canonicalJson } from "../run-store/record-id.js";
export { hashConstitution } from "./constitution-hash.js";
export { type ConstitutionIssue, formatConstitutionIssue } from "./constitution-issue.js";
export {
  type Assistant,
  assistantSchema,
  type Constitution,
  type ConstitutionContent,
  type ConstitutionFileKey,
  constitutionFiles,
  type Exemplar,
  type ExemplarTurn,
  exemplarSchema,
  exemplarTurnSchema,
  type IdentityExchange,
  identityExchangeSchema,
  type Principle,
  principleSchema,
  type RedTeamType,
  redTeamTypeSchema,
  type SeedTask,
  seedTaskSchema,
} from "./constitution-schema.js";
export { type ConstitutionStats, constitutionStats } from "./constitution-stats.js";
export { defaultConstitutionDir } from "./default-constitution-dir.js";
export {
  type ImportSeedListResult,
  importSeedList,
  loadConstitution,
  locateInConstitution,
  type ReadConstitutionResult,
  readConstitution,
} from "./load-constitution.js";
export {
  kebabIdOf,
  type ReadSeedListResult,
  readSeedList,
  type SeedListKey,
  type SeedListSource,
  seedFileFormats,
  seedListFields,
  seedListKeys,
  seedListYaml,
} from "./seed-files.js";
export {
  type ConstitutionPlaceholder,
  type ConstitutionTextValues,
  constitutionPlaceholders,
  constitutionTextValues,
  renderConstitutionText,
} from "./render-constitution-text.js";
