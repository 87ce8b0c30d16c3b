#!/usr/bin/env node
/** The `selfalign` command: only registers commands; each lives in commands/<name>.ts. */
import { Command } from "commander";
import { packageVersion } from "../package-root.js";
import { commands } from "./commands/index.js";
import { runMain } from "./run-main.js";

// The same relative path from src/cli (tsx) and dist/cli (built).

const program = new Command()
  .name("selfalign")
  .description(
    "Align a base language model with principle-driven self-alignment (SELF-ALIGN, the method behind Dromedary), SALMON's principle-following reward model with DPO or PPO, or I-SHEEP's rounds of self-assessed data.",
  )
  .version(packageVersion())
  .showHelpAfterError();

for (const register of commands) register(program);

await runMain(() => program.parseAsync(process.argv));
