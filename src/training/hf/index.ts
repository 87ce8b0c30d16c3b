export { HfGgufTrainer, type HfGgufTrainerOptions } from "./hf-gguf-trainer.js";
export { checkPython, HfTrainer, type HfTrainerOptions, isWorker } from "./hf-trainer.js";
export { HfTrainingError } from "./hf-training-error.js";
export {
  buildLaunchCommand,
  type HfDistributedBackend,
  type HfLaunchMode,
  type HfLauncher,
  type HfLaunchOptions,
  hfDistributedBackends,
  hfLaunchers,
  hfLaunchModes,
  type LaunchCommand,
  scriptArguments,
} from "./launch-command.js";
export { parseTrainerLine, type TrainerLine } from "./progress-parser.js";
export { hfBaseSchema, type HfTrainerConfig, hfTrainerOptionsSchema, resolveHfBase } from "./hf-trainer-options.js";
