/**
 * The constitution as data: zod schemas for the YAML files of a constitution folder (method-spec A.2-A.7, and B.2-B.5
 * for SALMON's salmon.yaml, which older folders may lack).
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

/** The kinds of RL prompt SALMON tells apart when it samples RL principles (method-spec B.5). */
export const salmonPromptTypes = ["general", "reasoning", "red-teaming"] as const;
export type SalmonPromptType = (typeof salmonPromptTypes)[number];

const salmonPrincipleFields = ["dimension", "definition", "negativeDefinition"] as const;

/**
 * A reward-model principle as written: one quality of a response, its definition and its negative definition (the
 * judge labels pairs under it, the reward model reads it, negated half of the time). It either has its own texts or
 * reuses a SELF-ALIGN rule (`principle: <id>`), whose `text` and `negatedText` then are its definitions.
 */
export const rewardPrincipleEntrySchema = z
  .strictObject({
    id: kebabId,
    /** Id of the rule in principles.yaml whose text and negatedText this principle reuses. */
    principle: kebabId.optional(),
    /** The quality judged, as the judge's answer names it ("the more {dimension} output"). Default: the rule's name. */
    dimension: text.optional(),
    definition: text.optional(),
    negativeDefinition: text.optional(),
  })
  .superRefine((entry, context) => {
    for (const field of salmonPrincipleFields) {
      if (entry.principle === undefined && entry[field] === undefined)
        context.addIssue({
          code: "custom",
          path: [field],
          message: `missing required field "${field}"; add it, or reuse a rule of principles.yaml with \`principle: <id>\``,
        });
      if (entry.principle !== undefined && field !== "dimension" && entry[field] !== undefined)
        context.addIssue({
          code: "custom",
          path: [field],
          message: `a principle that reuses rule "${entry.principle}" takes its texts from principles.yaml; remove ${field}, or remove \`principle\``,
        });
    }
  });
export type RewardPrincipleEntry = z.infer<typeof rewardPrincipleEntrySchema>;

/** An RL principle as written: a definition the reward model reads during RL, drawn with probability ∝ weight. */
export const rlPrincipleEntrySchema = z
  .strictObject({
    id: kebabId,
    /** Id of the rule in principles.yaml whose text this principle reuses as its definition. */
    principle: kebabId.optional(),
    definition: text.optional(),
    weight: z.number().positive(),
    /** Prompt types on which `promptTypeBoost` is added to the weight (B.5: reasoning and red-teaming boosts). */
    boostFor: z.array(z.enum(salmonPromptTypes)).default([]),
  })
  .superRefine((entry, context) => {
    if ((entry.principle === undefined) === (entry.definition === undefined))
      context.addIssue({
        code: "custom",
        path: ["definition"],
        message:
          entry.principle === undefined
            ? 'missing required field "definition"; add it, or reuse a rule of principles.yaml with `principle: <id>`'
            : `a principle that reuses rule "${entry.principle}" takes its text from principles.yaml; remove definition, or remove \`principle\``,
      });
  });
export type RlPrincipleEntry = z.infer<typeof rlPrincipleEntrySchema>;

export const salmonFileSchema = z.strictObject({
  rewardPrinciples: z.array(rewardPrincipleEntrySchema).min(1),
  rlPrinciples: z.array(rlPrincipleEntrySchema).min(1),
  /** Added to an RL principle's weight on the prompt types its `boostFor` names. Default 128 (B.5). */
  promptTypeBoost: z.number().min(0).default(128),
  /** RL-time intervention principles: listed first in every reviewer prompt during RL (B.5). */
  interventions: z.array(text).default([]),
});
export type SalmonFile = z.infer<typeof salmonFileSchema>;

/** A reward-model principle, resolved: its texts (placeholders unfilled) and, when reused, the rule they come from. */
export interface RewardPrinciple {
  id: string;
  dimension: string;
  definition: string;
  negativeDefinition: string;
  /** The SELF-ALIGN rule whose text and negatedText these are. */
  principle?: string;
}

/** An RL principle, resolved. */
export interface RlPrinciple {
  id: string;
  definition: string;
  weight: number;
  boostFor: SalmonPromptType[];
  /** The SELF-ALIGN rule whose text this is. */
  principle?: string;
}

/** SALMON's human annotation (salmon.yaml), resolved against principles.yaml. */
export interface Salmon {
  rewardPrinciples: RewardPrinciple[];
  rlPrinciples: RlPrinciple[];
  promptTypeBoost: number;
  interventions: string[];
}

/** The content of a constitution folder, as validated. */
export interface ConstitutionContent {
  principles: Principle[];
  exemplars: Exemplar[];
  redTeamTypes: RedTeamType[];
  seedTasks: SeedTask[];
  assistant: Assistant;
  /** SALMON's principles; absent when the folder has no salmon.yaml (the SALMON stages then refuse to run). */
  salmon?: Salmon;
}

/** A loaded constitution: its content, the folder it came from and its content hash (for provenance). */
export interface Constitution extends ConstitutionContent {
  /** sha256 (hex) of the canonical JSON of the content; formatting and comments do not change it. */
  hash: string;
  /** Folder it was loaded from. */
  dir: string;
}

/** The files of a constitution folder, what each holds (for error messages and `init`), and its schema. */
export const constitutionFiles: Record<
  "principles" | "exemplars" | "redTeam" | "seedTasks" | "assistant" | "salmon",
  { file: string; holds: string; schema: z.ZodType; optional?: boolean }
> = {
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
  salmon: {
    file: "salmon.yaml",
    holds:
      "SALMON's `rewardPrinciples` (id, dimension, definition, negativeDefinition, or `principle: <id>`), `rlPrinciples` (id, definition or principle, weight, boostFor), promptTypeBoost and interventions",
    schema: salmonFileSchema,
    optional: true,
  },
};
export type ConstitutionFileKey = keyof typeof constitutionFiles;
