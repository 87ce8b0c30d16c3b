/** The public API of selfalign: an explicit list of exports. */
export * from "./backends/language-model.js";
export * from "./constitution/index.js";
export * from "./data/index.js";
export * from "./errors/index.js";
export * from "./gguf/index.js";
export type { ProgressEvent, ProgressListener } from "./progress/progress-event.js";
export {
  type ItemResult,
  inShard,
  listStages,
  type Manifest,
  type OpenRunOptions,
  openRun,
  type ProcessItemsOptions,
  type ProcessItemsResult,
  parseShard,
  type RejectedRecord,
  Run,
  type RunInfo,
  type RunStatus,
  readRunStatus,
  readStageAcrossShards,
  recordId,
  type Shard,
  StageStore,
  type StageStatus,
  type StoreRecord,
} from "./run-store/index.js";
export * from "./report/index.js";
export {
  createOpenAICompatibleBackend,
  type OpenAICompatibleBackend,
  type OpenAICompatibleBackendOptions,
  parseRetryAfter,
  type RetryEvent,
  type ServerInfo,
  type ServerKind,
  serverKinds,
} from "./backends/openai-compatible/index.js";
export {
  type BackendConfig,
  type BackendType,
  backendConfigSchema,
  backendTypes,
  type CreateBackendOptions,
  createBackend,
  type BackendSpecObject,
  type LlamaCppBackendConfig,
  type ModelReference,
  type OpenAIBackendConfig,
  parseBackendSpec,
  resolveBackendConfig,
  validateBackendConfig,
} from "./backends/registry.js";
export { type StartServerOptions, type StartServerResult, startServer } from "./serve/server.js";
export {
  type EvalPoint,
  type LearningRateSchedule,
  type LossPoint,
  type OverlongPolicy,
  type PreferenceExample,
  type PreferenceLoss,
  type PreferenceOptions,
  type PreferenceTrainRequest,
  preferenceLosses,
  type RewardTrainRequest,
  type SftExample,
  type SftTrainRequest,
  type StaleCheckpointPolicy,
  type Trainer,
  type TrainKind,
  type TrainOptions,
  type TrainRequest,
  type TrainResult,
  trainKinds,
} from "./training/trainer.js";
export { EmbeddedTrainer, type EmbeddedTrainerOptions } from "./training/embedded/embedded-trainer.js";
export { type LoraAdapter, type LoraTarget, loraTargets } from "./training/embedded/lora.js";
export {
  type MeasureTrainingSpeedOptions,
  measureTrainingSpeed,
  type TrainingSpeed,
} from "./training/embedded/measure-training-speed.js";
export { supportedArchitectures as embeddedTrainerArchitectures } from "./training/embedded/model-config.js";
export { readGgufLora, writeGgufLora } from "./training/export/gguf-lora.js";
export { RewardModel, type RewardModelOptions } from "./training/reward/reward-model.js";
export { type RewardModelInfo, rewardModelInfoSchema } from "./training/reward/reward-model-info.js";
export { convertPeftToGgufLora, readPeftAdapter, writePeftAdapter } from "./training/export/peft-adapter.js";
export { readSafetensors, writeSafetensors } from "./training/export/safetensors.js";
export {
  createLlamaCppBackend,
  type EngineSpeed,
  LlamaCppBackend,
  type LlamaCppBackendOptions,
  type MeasureEngineSpeedOptions,
  measureEngineSpeed,
} from "./backends/llama-cpp/index.js";
export * from "./eval/index.js";
export * from "./text/index.js";
export * from "./stages/self-instruct/index.js";
export * from "./stages/red-team/index.js";
export * from "./stages/self-align/index.js";
export * from "./stages/isheep/index.js";
export { type MergeStageOptions, type MergeStageResult, mergeStage } from "./stages/shared/merge-stage.js";
export { readStageRecords } from "./stages/shared/stage-records.js";
