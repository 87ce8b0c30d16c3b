export { type DedupCheck, DedupIndex, type DedupIndexJson, type DedupIndexOptions } from "./dedup-index.js";
export {
  collapseWhitespace,
  cutRepeatedSegments,
  endsWithPunctuation,
  findBlacklistedSubstring,
  findBlacklistedWord,
  normalizeForExactMatch,
  type RepeatCut,
  startsWithNonAscii,
  startsWithPunctuation,
  wordCount,
} from "./filters.js";
export { lcsFMeasure, lcsLength, rougeL, rougeLTokens, rougeTokenize } from "./rouge-l.js";
