import type { Command } from "commander";
import { registerModel } from "./model.js";

/** Every CLI command registers itself here (one line per command file). */
export const commands: Array<(program: Command) => void> = [registerModel];
