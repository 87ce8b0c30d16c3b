#!/usr/bin/env node
/** The `selfalign` command: only registers commands; each lives in commands/<name>.ts. */
import { Command } from "commander";
import { commands } from "./commands/index.js";
import { runMain } from "./run-main.js";

const program = new Command()
  .name("selfalign")
  .description(
    "Align a base language model with principle-driven self-alignment (SELF-ALIGN / Dromedary, SALMON, I-SHEEP).",
  )
  .version("0.1.0")
  .showHelpAfterError();

for (const register of commands) register(program);

await runMain(() => program.parseAsync(process.argv));
