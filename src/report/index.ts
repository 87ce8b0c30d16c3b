export { countVerbNouns, rootVerbNoun, type VerbNoun, type VerbNounCounts } from "./instruction-diversity.js";
export { type WriteReportOptions, type WriteReportResult, renderReport, writeReport } from "./render-report.js";
export { collectReportData, type Histogram, type ReportData, type ReportRecord, wordHistogram } from "./report-data.js";
