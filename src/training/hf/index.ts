export { checkPython, HfTrainer, type HfTrainerOptions } from "./hf-trainer.js";
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
export { type HfTrainerConfig, hfTrainerOptionsSchema } from "./hf-trainer-options.js";
