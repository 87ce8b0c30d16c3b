import type { Command } from "commander";
import { registerConstitution } from "./constitution.js";
import { registerInit } from "./init.js";
import { registerModel } from "./model.js";
import { registerReport } from "./report.js";
import { registerStatus } from "./status.js";

/** Every CLI command registers itself here (one line per command file). */
export const commands: Array<(program: Command) => void> = [
  registerInit,
  registerConstitution,
  registerModel,
  registerReport,
  registerStatus,
];
