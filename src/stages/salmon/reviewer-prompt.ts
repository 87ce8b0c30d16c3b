/**
 * The prompt of SALMON's principle-following reward model (method-spec B.4, B.5): the answer under review first,
 * then the request it answers, then the guideline (the principles' definitions, one bullet each), then the cue after
 * which the reward is read, at the last token. Training lists an example's sampled reward principles (negative
 * definitions where negated); RL lists the intervention principles, then RL principles drawn by weight. The same
 * text is built for training, for `selfalign serve --reward-model` and for anything that scores with the model.
 */
import {
  type Constitution,
  constitutionTextValues,
  type RewardPrinciple,
  type RlPrinciple,
  renderConstitutionText,
  type Salmon,
  type SalmonPromptType,
} from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import { userMessage } from "../engrave/prompt.js";

/** The words after which the reward is read (the prompt's last line). */
export const REVIEWER_CUE = "The quality of this answer is";

export interface ReviewerPromptInput {
  /** The assistant's name, as the guideline's reused rules call it ("{name} should ..."). */
  assistantName: string;
  instruction: string;
  /** Context that follows the instruction (joined as the engraved format joins it). */
  input?: string;
  /** The answer under review, cleaned (see `reviewedText`). */
  response: string;
  /** The guideline, one principle definition per entry, in order, placeholders filled. */
  guidelines: readonly string[];
}

/** The part before the answer under review: the same for every answer (the trainer's `prompt`). */
export function reviewerPromptHead(assistantName: string): string {
  return [
    "# Review",
    "",
    `You review the answers that ${assistantName}, an AI assistant, gives to people's requests, and judge how good each answer is.`,
    "",
    "## The answer under review",
    "",
    `### ${assistantName}'s answer`,
    "",
  ].join("\n");
}

/** Everything from the answer under review to the cue (the trainer's `chosen` / `rejected`). */
export function reviewerPromptTail(input: Omit<ReviewerPromptInput, "assistantName">): string {
  if (input.guidelines.length === 0)
    throw new ConfigError("a reviewer prompt needs at least one principle in its guideline");
  return [
    input.response.trim(),
    "",
    "### The request it answers",
    userMessage(input.instruction, input.input ?? ""),
    "",
    "## How to judge it",
    "",
    "Judge the answer by these principles:",
    ...input.guidelines.map((line) => `- ${line.trim()}`),
    "",
    "A good answer follows every one of them.",
    "",
    "## Verdict",
    REVIEWER_CUE,
  ].join("\n");
}

/** The whole reviewer prompt; the reward is read at its last token. */
export function reviewerPrompt(input: ReviewerPromptInput): string {
  return reviewerPromptHead(input.assistantName) + reviewerPromptTail(input);
}

/** The constitution's SALMON part, or a clear error when its folder has no salmon.yaml. */
export function salmonOf(constitution: Constitution): Salmon {
  if (constitution.salmon) return constitution.salmon;
  throw new ConfigError(
    "this constitution has no salmon.yaml, which SALMON's stages read their principles from; copy src/constitution/default/salmon.yaml into it and edit it (its rules may reuse those of principles.yaml)",
    { path: constitution.dir, field: "salmon.yaml" },
  );
}

/** The reward principles named by `ids` (default: all of salmon.yaml's), or an error naming the option. */
export function rewardPrinciplesOf(
  constitution: Constitution,
  ids: readonly string[] | undefined,
  field: string,
): RewardPrinciple[] {
  const all = salmonOf(constitution).rewardPrinciples;
  if (ids === undefined) return all;
  return ids.map((id) => {
    const found = all.find((principle) => principle.id === id);
    if (!found)
      throw new ConfigError(`unknown reward principle "${id}"; salmon.yaml has: ${all.map((p) => p.id).join(", ")}`, {
        field,
      });
    return found;
  });
}

const render = (constitution: Constitution, text: string) =>
  renderConstitutionText(text, constitutionTextValues(constitution.assistant, "inference")).trim();

/** A reward principle's definition, or its negative definition when `negated`, placeholders filled. */
export function rewardPrincipleText(constitution: Constitution, principle: RewardPrinciple, negated: boolean): string {
  return render(constitution, negated ? principle.negativeDefinition : principle.definition);
}

/**
 * The guideline of a training example: its sampled reward principles (ids of salmon.yaml) in order, each as its
 * definition, or its negative definition where negated.
 */
export function rewardGuidelines(
  constitution: Constitution,
  principles: readonly string[],
  negated: readonly boolean[],
): string[] {
  const byId = new Map(salmonOf(constitution).rewardPrinciples.map((principle) => [principle.id, principle]));
  return principles.map((id, index) => {
    const principle = byId.get(id);
    if (!principle)
      throw new ConfigError(
        `reward principle "${id}" is not in salmon.yaml (its principles are: ${[...byId.keys()].join(", ")}); was the data made with another constitution?`,
        { path: constitution.dir, field: "rewardPrinciples" },
      );
    return rewardPrincipleText(constitution, principle, negated[index] === true);
  });
}

/** The weight of an RL principle on a prompt of `promptType`: its weight, plus the boost where `boostFor` names it. */
export function rlWeight(salmon: Salmon, principle: RlPrinciple, promptType: SalmonPromptType): number {
  return principle.weight + (principle.boostFor.includes(promptType) ? salmon.promptTypeBoost : 0);
}

/**
 * `count` RL principles drawn without replacement, each draw with probability proportional to the remaining
 * principles' weights on `promptType` (B.5: three per response). `random` gives uniform numbers in [0, 1).
 */
export function sampleRlPrinciples(
  salmon: Salmon,
  promptType: SalmonPromptType,
  random: () => number,
  count = 3,
): RlPrinciple[] {
  const pool = salmon.rlPrinciples.map((principle) => ({ principle, weight: rlWeight(salmon, principle, promptType) }));
  const drawn: RlPrinciple[] = [];
  while (drawn.length < count && pool.length > 0) {
    const total = pool.reduce((sum, entry) => sum + entry.weight, 0);
    let target = random() * total;
    let index = 0;
    while (index < pool.length - 1 && target >= pool[index]!.weight) target -= pool[index++]!.weight;
    drawn.push(pool[index]!.principle);
    pool.splice(index, 1);
  }
  return drawn;
}

/** The guideline during RL: the intervention principles first, then the given RL principles' definitions. */
export function rlGuidelines(constitution: Constitution, principles: readonly RlPrinciple[]): string[] {
  const salmon = salmonOf(constitution);
  return [...salmon.interventions, ...principles.map((principle) => principle.definition)].map((text) =>
    render(constitution, text),
  );
}

/** A generated answer as the reward model reads it: cut at the first turn or sequence marker, trimmed (B.5). */
export function reviewedText(response: string): string {
  let end = response.length;
  for (const marker of ["###", "<s>", "</s>"]) {
    const at = response.indexOf(marker);
    if (at >= 0 && at < end) end = at;
  }
  return response.slice(0, end).trim();
}
