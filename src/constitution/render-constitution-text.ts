/** Fill the placeholders of constitution texts: `{name}`, `{developer}`, `{knowledgeCutoff}`. */
import type { Assistant } from "./constitution-schema.js";

export const constitutionPlaceholders = ["name", "developer", "knowledgeCutoff"] as const;
export type ConstitutionPlaceholder = (typeof constitutionPlaceholders)[number];
export type ConstitutionTextValues = Record<ConstitutionPlaceholder, string>;

/**
 * The values for `assistant`'s texts. `"generation"` (stage 2's meta-prompt) names the assistant
 * `generationName`; `"inference"` (engraving, verbose cloning, serving) names it `name`.
 */
export function constitutionTextValues(
  assistant: Assistant,
  mode: "generation" | "inference" = "inference",
): ConstitutionTextValues {
  return {
    name: mode === "generation" ? assistant.generationName : assistant.name,
    developer: assistant.developer,
    knowledgeCutoff: assistant.knowledgeCutoff,
  };
}

const placeholderPattern = new RegExp(`\\{(${constitutionPlaceholders.join("|")})\\}`, "g");

/** Replace every known `{placeholder}` in `text`; anything else in braces is left as written. */
export function renderConstitutionText(text: string, values: ConstitutionTextValues): string {
  return text.replace(placeholderPattern, (_, key: ConstitutionPlaceholder) => values[key]);
}
