/** Data in and out in the field's formats: prompts from Alpaca / chat / text / Parquet files; records as Parquet. */
export {
  type DataRows,
  type ReadDataRowsOptions,
  readDataRows,
  type RowFileFormat,
  rowFileExtensions,
  rowFileFormatOf,
  rowFileFormats,
} from "./data-rows.js";
export { type DatasetCardFile, type DatasetCardOptions, renderDatasetCard } from "./dataset-card.js";
export { type ExportStageOptions, type ExportStageResult, exportStage } from "./export-stage.js";
export {
  type PromptFileFormat,
  type PromptRecord,
  promptFileFormats,
  promptId,
  promptRecordSchema,
  type ReadPromptsOptions,
  type ReadPromptsResult,
  readPrompts,
} from "./read-prompts.js";
export {
  constitutionHashMetadataKey,
  type ParquetDatasetFile,
  type WriteParquetDatasetOptions,
  type WriteParquetDatasetResult,
  writeParquetDataset,
} from "./write-dataset.js";
export {
  describeParquetColumn,
  inferParquetColumns,
  type ParquetColumn,
  type ParquetColumnKind,
  parquetColumnKinds,
  type WriteParquetOptions,
  type WriteParquetResult,
  writeParquetRows,
} from "./write-parquet.js";
