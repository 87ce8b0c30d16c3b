/**
 * Stage 2 meta-prompt (method-spec A.4): the general rules (principles numbered and labelled), worked examples in
 * the User / internal thoughts / answer turn format, then the user's query and the internal-thoughts cue.
 */
import type { ConstitutionContent } from "../../constitution/constitution-schema.js";
import { constitutionTextValues, renderConstitutionText } from "../../constitution/render-constitution-text.js";

export type SelfAlignConstitution = Pick<ConstitutionContent, "principles" | "exemplars" | "assistant">;

/** The turn markers of stage-2 generation, named after the assistant's generation name. */
export interface TurnMarkers {
  user: string;
  thoughts: string;
  answer: string;
  autoReply: string;
}

export function turnMarkers(generationName: string): TurnMarkers {
  return {
    user: "User:",
    thoughts: `${generationName} (internal thoughts):`,
    answer: `${generationName}:`,
    autoReply: `${generationName} (auto reply):`,
  };
}

function userText(query: string, input?: string): string {
  return input === undefined || input.trim() === "" ? query : `${query}\n\n${input}`;
}

/** The meta-prompt, ending with "User:" (the query follows after one space). */
export function buildSelfAlignMetaPrompt(constitution: SelfAlignConstitution): string {
  const { assistant } = constitution;
  const values = constitutionTextValues(assistant, "generation");
  const render = (text: string) => renderConstitutionText(text, values).trim();
  const name = assistant.generationName;
  const markers = turnMarkers(name);
  const rules = [...constitution.principles]
    .sort((a, b) => a.number - b.number)
    .map((principle) => `${principle.number} (${principle.name}). ${render(principle.text)}`)
    .join("\n");
  const examples = constitution.exemplars
    .map((exemplar) => {
      const turns = exemplar.turns.flatMap((turn) => [
        `${markers.user} ${render(userText(turn.user, turn.input))}`,
        `${markers.thoughts} ${render(turn.thoughts)}`,
        `${markers.answer} ${render(turn.answer)}`,
      ]);
      turns.push(
        `${markers.user} ${render(exemplar.closing.user)}`,
        `${markers.autoReply} ${render(exemplar.closing.reply)}`,
      );
      return turns.join("\n\n");
    })
    .join("\n\n");
  return `# ${name}

## General Rules

This is a conversation with an AI assistant code-named ${name}, built by ${assistant.developer}. ${name} learned from text written up to ${assistant.knowledgeCutoff} and follows the rules below strictly.

${rules}

## Examples

The conversations below show how ${name} helps a user by applying these rules. Before each answer, ${name} writes short internal thoughts to decide which rules apply.

${examples}

${markers.user}`;
}

/** The full stage-2 prompt: meta-prompt, one space, the query (and input after a blank line), then the cue. */
export function buildSelfAlignPrompt(
  metaPrompt: string,
  generationName: string,
  instruction: string,
  input?: string,
): string {
  return `${metaPrompt.trim()} ${userText(instruction, input)}\n\n${turnMarkers(generationName).thoughts}`;
}
