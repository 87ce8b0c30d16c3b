/**
 * The record of each I-SHEEP member, one kind per folder: answered pairs (answers, and the rule filter's survivors),
 * single ratings, kept pairs, and probe ratings of the eval. The prompts are stage-1a records (self-instruct schema).
 */
import { z } from "zod";
import { type FinishReason, finishReasons } from "../../backends/language-model.js";
import { keptRecordSchema, rejectedRecordSchema } from "../shared/record-schemas.js";
import { type RatingAspect, ratingAspects } from "./prompt.js";

/** A task and the round model's zero-shot answer (the answers stage; the rule filter keeps the same shape). */
export const pairRecordSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.string(),
  output: z.string(),
  finishReason: z.enum(finishReasons),
  backend: z.string(),
});
export interface PairRecord {
  [field: string]: unknown;
  id: string;
  parentId: string;
  instruction: string;
  input: string;
  output: string;
  finishReason: FinishReason;
  backend: string;
}

export const pairRejectedSchema = rejectedRecordSchema({
  instruction: z.string().optional(),
  input: z.string().optional(),
  output: z.string().optional(),
});

/** One rating of one pair on one aspect. `parentId` is the rated pair. */
export const ratingRecordSchema = keptRecordSchema({
  parentId: z.string(),
  aspect: z.enum(ratingAspects),
  /** The rated task and answer, as the rater saw them. */
  instruction: z.string(),
  input: z.string(),
  output: z.string(),
  score: z.number().int().min(1).max(10),
  rawScore: z.number(),
  explanation: z.string(),
  text: z.string(),
  backend: z.string(),
});
export interface RatingRecord {
  [field: string]: unknown;
  id: string;
  parentId: string;
  aspect: RatingAspect;
  instruction: string;
  input: string;
  output: string;
  /** 1..10, rounded half up. */
  score: number;
  /** The number as written ("8.5"). */
  rawScore: number;
  explanation: string;
  /** The rater's whole completion. */
  text: string;
  backend: string;
}

/** A rating that could not be parsed (kept as a rejection, counted under `rating-parse`). */
export const ratingRejectedSchema = rejectedRecordSchema({
  aspect: z.enum(ratingAspects).optional(),
  instruction: z.string().optional(),
  input: z.string().optional(),
  output: z.string().optional(),
  text: z.string().optional(),
  backend: z.string().optional(),
});

/** A pair the self-assessment kept, with both scores (null when the aspect was not rated). */
export const keptPairSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.string(),
  output: z.string(),
  ended: z.boolean(),
  quality: z.number().int().nullable(),
  following: z.number().int().nullable(),
});
export interface KeptPair {
  [field: string]: unknown;
  id: string;
  parentId: string;
  instruction: string;
  input: string;
  output: string;
  /** The answer ended by itself (not cut by the token limit). */
  ended: boolean;
  quality: number | null;
  following: number | null;
}

export const keptPairRejectedSchema = rejectedRecordSchema({
  instruction: z.string().optional(),
  input: z.string().optional(),
  output: z.string().optional(),
  quality: z.number().int().nullable().optional(),
  following: z.number().int().nullable().optional(),
});

/** One training example as stored (Alpaca fields plus the prompt / completion the trainer sees). */
export const trainRecordSchema = keptRecordSchema({
  parentId: z.string(),
  /** The round whose data it came from (several under total-base). */
  fromRound: z.number().int().min(1),
  instruction: z.string(),
  input: z.string(),
  output: z.string(),
  prompt: z.string(),
  completion: z.string(),
});
export interface TrainRecord {
  [field: string]: unknown;
  id: string;
  parentId: string;
  fromRound: number;
  instruction: string;
  input: string;
  output: string;
  prompt: string;
  completion: string;
}

/** The model an eval record is about: "base", or the adapter of a round ("round-2"). */
export const probeModelSchema = z.string().regex(/^(base|round-\d+)$/);
