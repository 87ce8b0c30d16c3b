import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import { loraFlag } from "../flags.js";
import { terminalSafe } from "../terminal-text.js";

const commandHelp = `Commands:
  /help    this list
  /reset   forget the conversation so far and start a new one
  /exit    leave (or Ctrl+D)
`;

export function registerChat(program: Command): void {
  program
    .command("chat")
    .description(
      "Talk to a model (base + optional LoRA adapters) in the engraved assistant's format. /help lists the commands (/reset, /exit).",
    )
    .requiredOption("--model <gguf>", "base model: a .gguf path or an hf: URI")
    .option(
      "--adapter <path[:scale]>",
      "LoRA adapter, repeatable, e.g. runs/x/verbose-clone/adapter/adapter.gguf",
      loraFlag("adapter"),
      [],
    )
    .option("--constitution <dir>", "constitution whose assistant name and prompts to use (default: the built-in one)")
    .option("--style <style>", "system prompt: concise | verbose", "concise")
    .option("--temperature <t>", "sampling temperature (the paper evaluates at 0.7)", Number.parseFloat, 0.7)
    .option("--max-tokens <n>", "longest answer", (value) => Number.parseInt(value, 10), 512)
    .action(
      async (options: {
        model: string;
        adapter: Array<{ path: string; scale?: number }>;
        constitution?: string;
        style: string;
        temperature: number;
        maxTokens: number;
      }) => {
        const { ConfigError } = await import("../../errors/index.js");
        if (options.style !== "concise" && options.style !== "verbose") {
          throw new ConfigError(`--style must be concise or verbose, got "${options.style}"`);
        }
        const style = options.style;
        const { defaultConstitutionDir, loadConstitution } = await import("../../constitution/index.js");
        const { createLlamaCppBackend } = await import("../../backends/llama-cpp/index.js");
        const { completeAll } = await import("../../backends/language-model.js");
        const { chatPromptFromMessages, cleanAnswer, USER_TURN_MARKER } = await import(
          "../../stages/engrave/prompt.js"
        );
        const constitution = await loadConstitution(options.constitution ?? defaultConstitutionDir());
        const lora = options.adapter;
        const backend = await createLlamaCppBackend({ model: options.model, lora, sequences: 1 });
        const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
        const history: Array<{ role: "user" | "assistant"; content: string }> = [];
        process.stdout.write(
          `Chatting with ${constitution.assistant.name} (${options.model}${lora.length ? ` + ${lora.map((l) => l.path).join(", ")}` : ""}). /help for commands, /exit to leave.\n`,
        );
        // Ctrl+C at the prompt leaves like Ctrl+D (in a terminal, readline receives it rather than the process).
        rl.on("SIGINT", () => rl.close());
        try {
          // The line iterator keeps lines that arrive while an answer is being written (piped input).
          rl.setPrompt("you> ");
          rl.prompt();
          for await (const line of rl) {
            const command = line.trim();
            if (command === "/exit") break;
            if (!command) {
              rl.prompt();
              continue;
            }
            if (/^\/[a-z]+$/i.test(command)) {
              if (command === "/help") process.stdout.write(commandHelp);
              else if (command === "/reset") {
                history.length = 0;
                process.stdout.write("(conversation reset)\n");
              } else process.stdout.write(`unknown command ${command}; /help lists the commands\n`);
              rl.prompt();
              continue;
            }
            history.push({ role: "user", content: line });
            const prompt = chatPromptFromMessages(constitution.assistant, style, history);
            process.stdout.write(`${constitution.assistant.name}> `);
            // Print the answer as it is written: each time, what is new in the cleaned text so far. Control
            // characters are made harmless first (terminalSafe maps a prefix to a prefix, so pieces still add up).
            let printed = "";
            const show = (raw: string) => {
              const text = terminalSafe(raw);
              if (text.length > printed.length && text.startsWith(printed)) {
                process.stdout.write(text.slice(printed.length));
                printed = text;
              }
            };
            const [result] = await completeAll(
              backend,
              [
                {
                  prompt: `${prompt}\n`,
                  temperature: options.temperature,
                  maxTokens: options.maxTokens,
                  stop: [USER_TURN_MARKER],
                },
              ],
              { onText: (progress) => show(cleanAnswer(progress.text)) },
            );
            const answer = cleanAnswer(result!.completions[0]!.text);
            show(answer);
            history.push({ role: "assistant", content: answer });
            process.stdout.write("\n");
            rl.prompt();
          }
        } finally {
          rl.close();
          await backend.close();
        }
      },
    );
}
