/** The I-SHEEP group and its members, in round order (each member's name is also its first folder's). */
export const isheepGroupName = "isheep";

export const isheepStages = {
  prompts: "isheep-prompts",
  answers: "isheep-answers",
  filter: "isheep-filter",
  rate: "isheep-rate",
  keep: "isheep-keep",
  train: "isheep-train",
  eval: "isheep-eval",
  /** The eval's second folder: the probe answers it rates. */
  evalAnswers: "isheep-eval-answers",
} as const;
