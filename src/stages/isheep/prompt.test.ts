import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { answerCompletion, answerPrompt, ratingAspects, ratingPrompt, renderTask } from "./prompt.js";
import type { KeptPair } from "./records.js";
import { toTrainRecord } from "./train-stage.js";

describe("I-SHEEP prompts", () => {
  it("render a task one way for answering, rating and training", () => {
    const task = renderTask("Summarise the text.", "Tides rise twice a day.");
    expect(task).toBe("Summarise the text.\n\nTides rise twice a day.");
    expect(answerPrompt("Summarise the text.", "Tides rise twice a day.")).toContain(`\n${task}\n`);
    expect(ratingPrompt("quality", "Summarise the text.", "Tides rise twice a day.", "They do.")).toContain(
      `\n${task}\n`,
    );
    expect(ratingPrompt("following", "Summarise the text.", "Tides rise twice a day.", "They do.")).toContain(
      `\n${task}\n`,
    );
  });

  it("answering, both rating prompts and the training prompt see a task only through renderTask (any text)", () => {
    // A prompt built from (instruction, input) equals the one built from the rendered task alone: no place joins the
    // two fields its own way (the reference had three joins: none, a space, a newline).
    const text = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom("", "  ", "Tides rise twice a day.", "  padded input \n", "line one\nline two", "### Answer"),
    );
    const pair = (instruction: string, input: string, output: string): KeptPair => ({
      id: "pair",
      parentId: "filtered",
      instruction,
      input,
      output,
      ended: true,
      quality: 9,
      following: 9,
    });
    // Every stored task has an instruction (stage 1a's parser wants 4 words or more).
    const instructionText = text.filter((value) => value.trim() !== "");
    fc.assert(
      fc.property(instructionText, text, text, (instruction, input, output) => {
        const task = renderTask(instruction, input);
        expect(answerPrompt(instruction, input)).toBe(answerPrompt(task));
        expect(answerPrompt(instruction, input)).toContain(`### Request\n${task}\n\n### Answer\n`);
        for (const aspect of ratingAspects) {
          expect(ratingPrompt(aspect, instruction, input, output)).toBe(ratingPrompt(aspect, task, "", output));
          expect(ratingPrompt(aspect, instruction, input, output)).toContain(`### Request\n${task}\n\n### Answer\n`);
        }
        const example = toTrainRecord("isheep-train", pair(instruction, input, output), 1);
        expect(example.prompt).toBe(answerPrompt(task));
        expect(example.prompt).toBe(answerPrompt(instruction, input));
      }),
      { numRuns: 500, seed: 20240817 },
    );
  });

  it("answering prompt and training completion", () => {
    expect(answerPrompt("Name a planet.")).toMatchInlineSnapshot(`
      "Below is a request from a user, followed by the answer of a helpful assistant.

      ### Request
      Name a planet.

      ### Answer
      "
    `);
    expect(answerCompletion("Mars.", true)).toMatchInlineSnapshot(`
      "Mars.

      ### End
      "
    `);
    expect(answerCompletion("Mars and", false)).toBe("Mars and");
  });

  it("rating prompts", () => {
    expect(ratingPrompt("quality", "Name a planet.", "", "Mars.")).toMatchInlineSnapshot(`
      "You are a strict examiner. Read the request and the answer below, then rate the quality of the answer.

      ### Request
      Name a planet.

      ### Answer
      Mars.

      ### Rating
      Score from 1 to 10. A score of 1 means the answer is wrong, longer than it needs to be, unclear, or repeats itself in content or layout. A score of 10 means the answer is correct, to the point, clear, and says each thing once.
      Reply as <score>||<explanation>: a whole number from 1 to 10, then "||", then one sentence on why.

      A strict examiner's rating:"
    `);
    expect(ratingPrompt("following", "Name a planet.", "", "Mars.")).toMatchInlineSnapshot(`
      "You are a strict examiner. Read the request and the answer below, then rate how well the answer follows the request.

      ### Request
      Name a planet.

      ### Answer
      Mars.

      ### Rating
      Score from 1 to 10. A score of 1 means the answer does not respond to the request (for instance it only carries on writing the request), ignores the format the request asks for, or the request itself is unclear or ambiguous. A score of 10 means the answer responds to the request directly, keeps to the format it asks for, and the request is clear.
      Reply as <score>||<explanation>: a whole number from 1 to 10, then "||", then one sentence on why.

      A strict examiner's rating:"
    `);
  });
});
