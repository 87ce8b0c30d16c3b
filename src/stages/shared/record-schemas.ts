/**
 * Pieces of the stages' record and option schemas: every stored record has an `id` (and usually a `parentId`); every
 * rejection names its filter and a reason. Record schemas are loose objects: they check the fields a stage and its
 * readers rely on and keep any others (provenance fields added later, older files).
 */
import { z } from "zod";
import type { SamplingOptions } from "../../backends/language-model.js";
import { samplingConfigSchema } from "../../pipeline/train-config.js";

export const recordIdField = z.string().min(1, "a record needs a non-empty id");

/** A kept record's common fields plus `shape`. */
export function keptRecordSchema<S extends z.ZodRawShape>(shape: S) {
  return z.looseObject({ id: recordIdField, parentId: z.string().optional(), ...shape });
}

/** A rejected record: the filter that rejected it and why, plus whatever of `shape` it carries. */
export function rejectedRecordSchema<S extends z.ZodRawShape>(shape: S = {} as S) {
  return z.looseObject({
    id: recordIdField,
    parentId: z.string().optional(),
    filter: z.string().min(1),
    reason: z.string(),
    /** The input this rejection leaves unfinished (retried when the stage runs again; see RejectedRecord). */
    retryOf: z.string().optional(),
    ...shape,
  });
}

/** The sampling options schema with a stage's defaults filled in, so an option set to its default is the same setting. */
export function samplingWithDefaults(defaults: SamplingOptions) {
  const shape = samplingConfigSchema.shape;
  const withDefaults: Record<string, z.ZodType> = {};
  for (const [name, value] of Object.entries(defaults)) {
    const field = shape[name as keyof typeof shape];
    if (field) {
      const inner = field.unwrap() as z.ZodType & { default(value: unknown): z.ZodType };
      withDefaults[name] = inner.default(value).describe(field.description ?? name);
    }
  }
  // Typed as the plain sampling schema: the defaults fill fields that are optional there.
  return samplingConfigSchema.extend(withDefaults).prefault({}) as unknown as z.ZodPrefault<
    typeof samplingConfigSchema
  >;
}
