/**
 * I-SHEEP's prompts (method-spec C.2, C.4, C.6), in our words. A task (instruction + input) is rendered one way
 * everywhere — when the model answers it, when a rater reads it, and in the training prompt — where the reference used
 * three renderings (pitfall C.9.3). Pure templates.
 */
import { userMessage } from "../engrave/prompt.js";

/** The one rendering of a task: the instruction, then a blank line and the input when there is one. */
export const renderTask = (instruction: string, input = ""): string => userMessage(instruction, input);

const answerPreamble = "Below is a request from a user, followed by the answer of a helpful assistant.";

/** The heading the answer follows; generation stops at the next `###` heading. */
export const answerHeading = "### Answer";
/** Stop string of answering: the start of any further heading. */
export const answerStop = "\n###";
/** Written after an answer that ended by itself in the training completion, so the trained model learns to stop. */
export const answerEndMarker = "\n\n### End";

/** The zero-shot answering prompt (also the training prompt); the answer follows on the next line. */
export function answerPrompt(instruction: string, input = ""): string {
  return `${answerPreamble}\n\n### Request\n${renderTask(instruction, input)}\n\n${answerHeading}\n`;
}

/** The training completion of an answer: the answer, plus the end marker when it ended by itself. */
export function answerCompletion(output: string, ended: boolean): string {
  return `${output}${ended ? `${answerEndMarker}\n` : ""}`;
}

/** The two self-assessment aspects (method-spec C.4), in the order they are asked. */
export const ratingAspects = ["quality", "following"] as const;
export type RatingAspect = (typeof ratingAspects)[number];

/** What each end of the 1-10 scale means, per aspect (the paper's "combined standard"). */
const scales: Record<RatingAspect, { subject: string; low: string; high: string }> = {
  quality: {
    subject: "the quality of the answer",
    low: "the answer is wrong, longer than it needs to be, unclear, or repeats itself in content or layout",
    high: "the answer is correct, to the point, clear, and says each thing once",
  },
  following: {
    subject: "how well the answer follows the request",
    low: "the answer does not respond to the request (for instance it only carries on writing the request), ignores the format the request asks for, or the request itself is unclear or ambiguous",
    high: "the answer responds to the request directly, keeps to the format it asks for, and the request is clear",
  },
};

/**
 * I-SHEEP's lines of human annotation, counted by `selfalign constitution stats` with the constitution's rule (one
 * line per text a person wrote that tells the model what is good; templates are code): the two ends of each rating
 * scale. Its seed tasks are the constitution's, counted under SELF-ALIGN.
 */
export function isheepAnnotationLines(): { ratingScales: number; total: number } {
  const ratingScales = ratingAspects.reduce(
    (sum, aspect) => sum + [scales[aspect].low, scales[aspect].high].filter((text) => text.trim() !== "").length,
    0,
  );
  return { ratingScales, total: ratingScales };
}

/** The separator between the score and the explanation in a rating. */
export const ratingSeparator = "||";

/** A plain-text rating prompt (no chat template), ending with the cue the score follows. */
export function ratingPrompt(aspect: RatingAspect, instruction: string, input: string, output: string): string {
  const scale = scales[aspect];
  return `You are a strict examiner. Read the request and the answer below, then rate ${scale.subject}.

### Request
${renderTask(instruction, input)}

### Answer
${output.trim()}

### Rating
Score from 1 to 10. A score of 1 means ${scale.low}. A score of 10 means ${scale.high}.
Reply as <score>${ratingSeparator}<explanation>: a whole number from 1 to 10, then "${ratingSeparator}", then one sentence on why.

A strict examiner's rating:`;
}
