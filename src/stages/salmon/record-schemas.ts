/** The records of SALMON's stage folders, checked on every write and read (loose: extra fields are kept). */
import { z } from "zod";
import { keptRecordSchema, rejectedRecordSchema } from "../shared/record-schemas.js";

const preference = z.union([z.literal(1), z.literal(2)]);

/** One sampled answer (two per prompt). */
export const salmonResponseRecordSchema = keptRecordSchema({
  parentId: z.string(),
  sample: z.number().int().min(0),
  instruction: z.string(),
  input: z.string(),
  output: z.string(),
  finishReason: z.string(),
  ended: z.boolean(),
  seed: z.number().int(),
  questionType: z.string().optional(),
  source: z.string().optional(),
  backend: z.string(),
});

export const salmonResponseRejectedSchema = rejectedRecordSchema({
  sample: z.number().int().optional(),
  instruction: z.string().optional(),
  output: z.string().optional(),
});

export const judgmentSchema = z.strictObject({
  principle: z.string(),
  s12: z.number(),
  s21: z.number(),
  preference: z.union([z.literal(0), preference]),
});

/** A judged pair: both answers and one judgment per reward principle. */
export const salmonPreferenceRecordSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.string(),
  output1: z.string(),
  output2: z.string(),
  responseIds: z.tuple([z.string(), z.string()]),
  ended: z.tuple([z.boolean(), z.boolean()]),
  questionType: z.string().optional(),
  judgments: z.array(judgmentSchema).min(1),
  judge: z.string(),
});

export const salmonPreferenceRejectedSchema = rejectedRecordSchema({ instruction: z.string().optional() });

/** One instructable preference example (one pass over one pair). */
export const salmonAggregateRecordSchema = keptRecordSchema({
  /** The judged pair. */
  parentId: z.string(),
  /** The set of pairs it was computed from: records of another set are stale (see aggregateSetId). */
  set: z.string(),
  pass: z.number().int().min(1),
  instruction: z.string(),
  input: z.string(),
  /** The policy's prompt (engraved chat format), as the preference export writes it. */
  prompt: z.string(),
  output1: z.string(),
  output2: z.string(),
  preference,
  chosen: z.string(),
  rejected: z.string(),
  /** Whether the chosen / rejected answer ended by itself. */
  chosenEnded: z.boolean(),
  rejectedEnded: z.boolean(),
  principles: z.array(z.string()).min(1),
  negated: z.array(z.boolean()).min(1),
  scores: z.array(z.number()).min(1),
  dominant: z.number().int().min(0),
  ruleFlag: z.boolean(),
  rule: z.enum(["ai-phrase", "language"]).optional(),
  noiseFlip: z.boolean(),
  swapped: z.boolean(),
  languages: z
    .strictObject({
      instruction: z.string().nullable(),
      output1: z.string().nullable(),
      output2: z.string().nullable(),
    })
    .optional(),
  questionType: z.string().optional(),
});

export const salmonAggregateRejectedSchema = rejectedRecordSchema({
  pass: z.number().int().optional(),
  instruction: z.string().optional(),
  principles: z.array(z.string()).optional(),
});

/** A training pair of the reward model: the reviewer prompt split where the answer under review begins. */
export const salmonRewardPairSchema = keptRecordSchema({
  parentId: z.string(),
  prompt: z.string(),
  chosen: z.string(),
  rejected: z.string(),
  principles: z.array(z.string()),
  negated: z.array(z.boolean()),
});
