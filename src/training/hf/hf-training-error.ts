import { SelfalignError } from "../../errors/selfalign-error.js";

/** The GPU training script could not be started or failed; the message carries the script's own reason. */
export class HfTrainingError extends SelfalignError {}
