import type { Command } from "commander";
import { registerChat } from "./chat.js";
import { registerConstitution } from "./constitution.js";
import { registerDemo } from "./demo.js";
import { registerDoctor } from "./doctor.js";
import { registerEval } from "./eval.js";
import { registerExport } from "./export.js";
import { registerInit } from "./init.js";
import { registerIsheep } from "./isheep.js";
import { registerMerge } from "./merge.js";
import { registerModel } from "./model.js";
import { registerReport } from "./report.js";
import { registerRun } from "./run.js";
import { registerServe } from "./serve.js";
import { registerStage } from "./stage.js";
import { registerStatus } from "./status.js";
import { registerTrain } from "./train.js";

/** Every CLI command registers itself here (one line per command file). */
export const commands: Array<(program: Command) => void> = [
  registerInit,
  registerRun,
  registerIsheep,
  registerDemo,
  registerChat,
  registerConstitution,
  registerModel,
  registerDoctor,
  registerEval,
  registerReport,
  registerStatus,
  registerServe,
  registerTrain,
  registerStage,
  registerMerge,
  registerExport,
];
