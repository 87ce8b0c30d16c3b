import { describe, expect, it } from "vitest";
import { answerCompletion, answerPrompt, ratingPrompt, renderTask } from "./prompt.js";

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
