/**
 * The aggregated preferences in the shapes other trainers read, each a `prompt` / `chosen` / `rejected` JSONL file
 * (and Parquet with a dataset card):
 * - preferences.jsonl, for the policy (DPO): `prompt` is the engraved chat prompt, `chosen` / `rejected` the answers
 *   as the SFT data writes completions ("\n" + answer, plus the end-of-turn marker when the answer ended by itself);
 * - reward-pairs.jsonl, for the principle-following reward model: the reviewer prompt of method-spec B.4 split where
 *   the answer under review begins. Its layout puts the answer before the request and the guideline, so `prompt` is
 *   the part before the answer and `chosen` / `rejected` run from the answer to the cue, principles included;
 *   prompt + chosen is the whole reviewer text, which is what TRL's RewardTrainer (explicit prompt) and OpenRLHF's
 *   train_rm (prompt and response joined with no separator) score at the last token.
 */
import { join } from "node:path";
import type { Constitution } from "../../constitution/index.js";
import { writeParquetDataset } from "../../data/write-dataset.js";
import { packageVersion } from "../../package-root.js";
import { writeJsonLines } from "../../run-store/json-file.js";
import { USER_TURN_MARKER } from "../engrave/prompt.js";
import { reviewerPromptHead, reviewerPromptTail, rewardGuidelines } from "./reviewer-prompt.js";

/** The fields of an aggregated example the exports read. */
export interface AggregatedExample {
  id: string;
  instruction: string;
  input: string;
  prompt: string;
  chosen: string;
  rejected: string;
  chosenEnded: boolean;
  rejectedEnded: boolean;
  principles: readonly string[];
  negated: readonly boolean[];
}

export interface PreferencePair {
  [field: string]: unknown;
  prompt: string;
  chosen: string;
  rejected: string;
}

const completion = (answer: string, ended: boolean) => `\n${answer}${ended ? `\n\n${USER_TURN_MARKER}\n` : ""}`;

/** The policy's preference pair (DPO). */
export function policyPair(example: AggregatedExample): PreferencePair {
  return {
    prompt: example.prompt,
    chosen: completion(example.chosen, example.chosenEnded),
    rejected: completion(example.rejected, example.rejectedEnded),
  };
}

/** The reward model's pair: the reviewer prompt with the example's principles (negative definitions where negated). */
export function rewardPair(example: AggregatedExample, constitution: Constitution): PreferencePair {
  const guidelines = rewardGuidelines(constitution, example.principles, example.negated);
  const tail = (response: string) =>
    reviewerPromptTail({ instruction: example.instruction, input: example.input, response, guidelines });
  return {
    prompt: reviewerPromptHead(constitution.assistant.name),
    chosen: tail(example.chosen),
    rejected: tail(example.rejected),
  };
}

export const preferenceExportFiles = {
  preferences: "preferences.jsonl",
  rewardPairs: "reward-pairs.jsonl",
} as const;

/** Write both exports, as JSONL and Parquet with a dataset card, into `dir`. */
export async function writePreferenceExports(
  dir: string,
  examples: readonly AggregatedExample[],
  constitution: Constitution,
  card: { command?: string; stage: string },
): Promise<{ preferences: string; rewardPairs: string }> {
  const policy = examples.map(policyPair);
  const reward = examples.map((example) => rewardPair(example, constitution));
  const files = {
    preferences: join(dir, preferenceExportFiles.preferences),
    rewardPairs: join(dir, preferenceExportFiles.rewardPairs),
  };
  await writeJsonLines(files.preferences, policy);
  await writeJsonLines(files.rewardPairs, reward);
  const text = { kind: "string" } as const;
  const columns = [
    { name: "prompt", ...text },
    { name: "chosen", ...text },
    { name: "rejected", ...text },
  ];
  await writeParquetDataset(dir, {
    title: `${constitution.assistant.name}: principle-conditioned preferences (${card.stage})`,
    summary:
      `Pairs of ${constitution.assistant.name}'s own answers, labelled by ${constitution.assistant.name} itself under one principle at a time and ` +
      `aggregated into instructable preferences (SALMON), made by selfalign's \`${card.stage}\` stage: ${examples.length} examples. ` +
      "`preferences` is for preference training of the policy (DPO); `reward-pairs` for a reward model that follows the principles it is shown.",
    files: [
      { config: "preferences", file: "preferences.parquet", rows: policy, columns, default: true },
      { config: "reward-pairs", file: "reward-pairs.parquet", rows: reward, columns },
    ],
    fieldDescriptions: {
      prompt:
        "preferences: the policy's prompt; reward-pairs: the reviewer prompt up to the answer under review (prompt + chosen is the whole text)",
      chosen: "the preferred answer (reward-pairs: followed by the request, the principles and the verdict cue)",
      rejected: "the other answer, in the same form",
    },
    constitutionHash: constitution.hash,
    ...(card.command === undefined ? {} : { command: card.command }),
    provenance: { "selfalign version": packageVersion() },
    alsoAs: [preferenceExportFiles.preferences, preferenceExportFiles.rewardPairs],
  });
  return files;
}
