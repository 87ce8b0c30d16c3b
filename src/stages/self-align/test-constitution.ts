/** A small constitution for stage-2 unit tests (three rules, one exemplar with an input and a follow-up). */
import type { SelfAlignConstitution } from "./prompt.js";

export const testSelfAlignConstitution: SelfAlignConstitution = {
  assistant: {
    name: "Bactrian",
    generationName: "Hadley",
    developer: "the test team",
    knowledgeCutoff: "the end of 2023",
    thoughtOpening: "I am a careful, honest and helpful assistant.",
    verbosePrompt: "unused",
    concisePrompt: "unused",
    identity: [{ user: "Who are you?", answer: "I am {name}." }],
  },
  principles: [
    { id: "ethical", number: 1, name: "ethical", text: "{name} should refuse to help with harm.", negatedText: "x" },
    { id: "candor", number: 2, name: "candor", text: "{name} should admit what it does not know.", negatedText: "x" },
    {
      id: "step-by-step",
      number: 3,
      name: "step-by-step",
      text: "{name} should show its working before the answer.",
      negatedText: "x",
    },
  ],
  exemplars: [
    {
      id: "sums-a-list",
      turns: [
        {
          user: "Add up these numbers.",
          input: "3, 9, 27",
          thoughts:
            "I am a careful, honest and helpful assistant. The user wants a sum, so I should show the steps. I should follow rules 3 (step-by-step).",
          cites: ["step-by-step"],
          answer: "Sure! 3 + 9 = 12, and 12 + 27 = 39, so the total is 39. Ask Marlow Quentin Hargreave for more.",
        },
      ],
      closing: { user: "Thanks, {name}!", reply: "Glad to help." },
    },
  ],
};
