/**
 * Stage 1a prompt (method-spec A.2): a request for 20 varied task instructions with nine requirements, then k
 * sampled demo tasks as a numbered `###`-separated list that the base model continues from item k+1.
 */
import { collapseWhitespace } from "../../text/filters.js";

/** One demo task shown in the prompt. */
export interface SelfInstructDemo {
  instruction: string;
  input?: string;
}

/** Our wording of the generation request; the structure (nine requirements, the closing list line) follows A.2. */
export const selfInstructPreamble = `You are asked to invent 20 different task instructions. They will be given to a language model, and we will judge how well it completes them.

The instructions must meet these requirements:
1. Vary the verbs: do not start many instructions with the same verb.
2. Vary the phrasing: mix direct commands with questions.
3. Vary the kind of task: for example open-ended generation, classification, editing, rewriting, brainstorming, open or closed question answering, reasoning, coding, summarising and extraction.
4. A model that only reads and writes text must be able to do the task. Do not ask for pictures, sounds or video as output, and do not ask it to act in the physical world, such as setting an alarm or posting a parcel.
5. Write the instructions in English.
6. Keep each instruction to one or two sentences, either an order or a question.
7. Where a task needs an input, write a realistic one of at most about 100 words (a paragraph, a list, a short dialogue, a snippet of code) with real content, never a placeholder. Not every task needs an input.
8. Spread the tasks over many subjects, such as cooking, sport, law, medicine, personal finance, travel, history, physics, chemistry, biology, geography, astronomy, literature, poetry, music, film, games, programming, mathematics, statistics, economics, psychology, philosophy, religion, politics, education, careers, relationships, parenting, pets, gardening, fashion, architecture, engineering, the environment, agriculture, energy, transport, the internet and everyday life.
9. When a task needs no input, write "<noinput>" in the input field.

List of 20 tasks:`;

/** A demo instruction as the reference renders it: whitespace collapsed, a trailing colon removed. */
export function renderDemoInstruction(instruction: string): string {
  return collapseWhitespace(instruction).replace(/:$/, "");
}

/** The full prompt: preamble, demos numbered 1..k, then `###` and `{k+1}. Instruction:` for the model to continue. */
export function buildSelfInstructPrompt(demos: readonly SelfInstructDemo[]): string {
  let prompt = `${selfInstructPreamble}\n`;
  demos.forEach((demo, i) => {
    const input = demo.input === undefined || demo.input.trim() === "" ? "<noinput>" : demo.input;
    prompt += `###\n${i + 1}. Instruction: ${renderDemoInstruction(demo.instruction)}\n${i + 1}. Input:\n${input}\n`;
  });
  prompt += `###\n${demos.length + 1}. Instruction:`;
  return prompt;
}
