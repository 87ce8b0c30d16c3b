/**
 * The constitution as data: zod schemas for the five YAML files of a constitution folder (method-spec A.2-A.7).
 * Texts may hold the placeholders `{name}`, `{developer}` and `{knowledgeCutoff}`, filled in by
 * `renderConstitutionText` (stage 2 fills `{name}` with `generationName`, inference with `name`).
 */
import { z } from "zod";

const kebabId = z
  .string()
  .regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, "must be kebab-case: lower-case letters and digits joined by single dashes");
const text = z.string().trim().min(1, "must be a non-empty text");

/** One rule of the constitution; `number` is how internal thoughts cite it ("rule 4 (question assessment)"). */
export const principleSchema = z.strictObject({
  id: kebabId,
  number: z.number().int().min(1),
  name: text,
  /** The rule, written "{name} should ...". */
  text,
  /** The opposite rule, used by SALMON to build negated preferences. */
  negatedText: text,
});
export type Principle = z.infer<typeof principleSchema>;

/** One user turn of an exemplar and the assistant's internal thoughts and answer to it. */
export const exemplarTurnSchema = z.strictObject({
  user: text,
  /** Optional input (context, data) that follows the user's query. */
  input: text.optional(),
  /** Begins with the assistant's `thoughtOpening` and cites principles by number and name. */
  thoughts: text,
  /** Ids of the principles the thoughts cite. */
  cites: z.array(kebabId).min(1, "must cite at least one principle id"),
  answer: text,
});
export type ExemplarTurn = z.infer<typeof exemplarTurnSchema>;

/** A worked conversation shown to the base model in the stage-2 meta-prompt. */
export const exemplarSchema = z.strictObject({
  id: kebabId,
  /** The first turn, then optionally one follow-up turn. */
  turns: z.array(exemplarTurnSchema).min(1, "needs at least one turn").max(2, "has at most two turns"),
  /** The user's closing praise and the assistant's short automatic reply. */
  closing: z.strictObject({ user: text, reply: text }),
});
export type Exemplar = z.infer<typeof exemplarSchema>;

/** A kind of question a model tends to get wrong or answer unsafely, seeding topic-guided red-teaming. */
export const redTeamTypeSchema = z.strictObject({
  id: kebabId,
  /** "Questions that require ...". */
  label: text,
  seedTopic: text,
  seedQuestion: text,
});
export type RedTeamType = z.infer<typeof redTeamTypeSchema>;

/** A hand-written task that seeds self-instruct (Alpaca field names). */
export const seedTaskSchema = z.strictObject({
  id: kebabId,
  instruction: text,
  input: text.optional(),
  output: text.optional(),
  /** Whether the task asks to pick a label from a closed set. Default false. */
  isClassification: z.boolean().default(false),
});
export type SeedTask = z.infer<typeof seedTaskSchema>;

/** A "who are you" question and the answer the engraved assistant should give. */
export const identityExchangeSchema = z.strictObject({ user: text, answer: text });
export type IdentityExchange = z.infer<typeof identityExchangeSchema>;

/** Who the assistant is and the system texts it is prompted with. */
export const assistantSchema = z.strictObject({
  /** Name used at inference and in the engraved data. */
  name: text,
  /** Name used in the stage-2 meta-prompt (replaced by `name` in kept answers). */
  generationName: text,
  developer: text,
  /** Free text such as "early 2024"; fills `{knowledgeCutoff}`. */
  knowledgeCutoff: text,
  /** The fixed sentence every internal thought starts with; stage 2 keeps only outputs that start with it. */
  thoughtOpening: text,
  /** System text of the verbose ("extensive") teacher prompt (stage 4). */
  verbosePrompt: text,
  /** System text of the concise prompt (engraving and inference). */
  concisePrompt: text,
  identity: z.array(identityExchangeSchema).min(1, "needs at least one identity exchange"),
});
export type Assistant = z.infer<typeof assistantSchema>;

export const principlesFileSchema = z.strictObject({ principles: z.array(principleSchema).min(1) });
export const exemplarsFileSchema = z.strictObject({ exemplars: z.array(exemplarSchema).min(1) });
export const redTeamFileSchema = z.strictObject({ types: z.array(redTeamTypeSchema).min(1) });
export const seedTasksFileSchema = z.strictObject({ tasks: z.array(seedTaskSchema).min(1) });

/** The content of a constitution folder, as validated. */
export interface ConstitutionContent {
  principles: Principle[];
  exemplars: Exemplar[];
  redTeamTypes: RedTeamType[];
  seedTasks: SeedTask[];
  assistant: Assistant;
}

/** A loaded constitution: its content, the folder it came from and its content hash (for provenance). */
export interface Constitution extends ConstitutionContent {
  /** sha256 (hex) of the canonical JSON of the content; formatting and comments do not change it. */
  hash: string;
  /** Folder it was loaded from. */
  dir: string;
}

/** The files of a constitution folder, what each holds (for error messages and `init`), and its schema. */
export const constitutionFiles = {
  principles: {
    file: "principles.yaml",
    holds: "`principles:`, a list of rules with id, number, name, text and negatedText",
    schema: principlesFileSchema,
  },
  exemplars: {
    file: "exemplars.yaml",
    holds: "`exemplars:`, worked conversations with id, turns (user, thoughts, cites, answer) and closing",
    schema: exemplarsFileSchema,
  },
  redTeam: {
    file: "red-team.yaml",
    holds: "`types:`, red-team question types with id, label, seedTopic and seedQuestion",
    schema: redTeamFileSchema,
  },
  seedTasks: {
    file: "seed-tasks.yaml",
    holds: "`tasks:`, self-instruct seed tasks with id, instruction, optional input/output and isClassification",
    schema: seedTasksFileSchema,
  },
  assistant: {
    file: "assistant.yaml",
    holds:
      "the assistant's name, generationName, developer, knowledgeCutoff, thoughtOpening, verbosePrompt, concisePrompt and identity",
    schema: assistantSchema,
  },
} as const;
export type ConstitutionFileKey = keyof typeof constitutionFiles;
