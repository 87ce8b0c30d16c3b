import type { Command } from "commander";
import { registerConstitution } from "./constitution.js";
import { registerEval } from "./eval.js";
import { registerInit } from "./init.js";
import { registerModel } from "./model.js";
import { registerReport } from "./report.js";
import { registerServe } from "./serve.js";
import { registerStatus } from "./status.js";
import { registerTrain } from "./train.js";

/** Every CLI command registers itself here (one line per command file). */
export const commands: Array<(program: Command) => void> = [
  registerInit,
  registerConstitution,
  registerModel,
  registerEval,
  registerReport,
  registerStatus,
  registerServe,
  registerTrain,
];
