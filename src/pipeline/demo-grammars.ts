/**
 * The GBNF grammars `selfalign demo` gives its stages (the `grammar` sampling option every generating stage takes),
 * so the random-weight model writes text in each stage's format: numbered task lists, topic lists, questions,
 * internal thoughts that cite principles by number then an answer, a teacher's long answer. Inside the grammar the
 * random model still picks every word, so the texts are nonsense; what the grammar buys is that every parser,
 * filter and dedup of the pipeline sees records it can keep, and the trainings learn from them.
 */
import type { Principle } from "../constitution/index.js";
import { gbnfLiteral } from "../stages/shared/grammar.js";

/** Words the texts are made of (none of them is on a filter's blacklist). */
const words = [
  "river",
  "garden",
  "lantern",
  "harbor",
  "orchard",
  "meadow",
  "kettle",
  "violin",
  "compass",
  "ladder",
  "pebble",
  "thunder",
  "candle",
  "anchor",
  "cactus",
  "marble",
  "puzzle",
  "saddle",
  "velvet",
  "walnut",
  "falcon",
  "glacier",
  "hammock",
  "island",
  "jigsaw",
  "kayak",
  "lemon",
  "mitten",
  "nectar",
  "oyster",
];
const capitalised = words.map((word) => word[0]!.toUpperCase() + word.slice(1));
const verbs = ["Explain", "List", "Compare", "Describe", "Summarize", "Suggest", "Classify", "Rewrite", "Name", "Plan"];

const choice = (items: readonly string[]) => items.map(gbnfLiteral).join(" | ");

const wordRule = `w ::= ${choice(words)}`;

/** Self-instruct: the model continues "6. Instruction:" with three numbered tasks (the first two survive parsing). */
export function selfInstructGrammar(firstNumber: number): string {
  const item = (n: number, first: boolean) =>
    `${first ? '" "' : `"${n}. Instruction: "`} task "\\n${n}. Input:\\n" input "\\n###\\n"`;
  return [
    `root ::= ${[0, 1, 2].map((k) => item(firstNumber + k, k === 0)).join(" ")}`,
    `task ::= verb " the " w " " w " of the " w " and the " w (" near the " w)? "."`,
    `verb ::= ${choice(verbs)}`,
    `input ::= "<noinput>" | "A " w " and a " w " beside a " w "."`,
    wordRule,
  ].join("\n");
}

/** Red-team topics: three new numbered topic lines (capitalised, at most three words). */
export const topicGrammar = [
  "root ::= line line line",
  'line ::= [2-9] ". " topic "\\n"',
  `topic ::= cap | cap " " w`,
  `cap ::= ${choice(capitalised)}`,
  wordRule,
].join("\n");

/** Red-team questions: the text of one question (the stage puts each in its numbered hint line). */
export const questionGrammar = [
  'root ::= start " the " w " of the " w " near the " w "?"',
  'start ::= "What is" | "Where is" | "Who owns" | "Why does" | "How big is"',
  wordRule,
].join("\n");

/**
 * Self-align: internal thoughts that open with the constitution's sentence and cite one or two principles by number
 * and name, then the answer (six sentences, past the length filter), then the next user turn (the stop string).
 */
export function selfAlignGrammar(
  principles: readonly Pick<Principle, "number" | "name">[],
  thoughtOpening: string,
  generationName: string,
): string {
  const rules = principles.map((principle) => `${principle.number} (${principle.name})`);
  return [
    `root ::= ${gbnfLiteral(` ${thoughtOpening} `)} "The user asks about the " w " and the " w ". I should follow rules " rule (", " rule)? "." ${gbnfLiteral(`\n\n${generationName}: `)} answer "\\n\\nUser:"`,
    `rule ::= ${choice(rules)}`,
    "answer ::= s s s s s s",
    's ::= "The " w " keeps the " w " and the " w " close to the " w ". "',
    wordRule,
  ].join("\n");
}

/** Verbose cloning: a long teacher answer in two paragraphs, then the next user turn (the stop string). */
export const verboseGrammar = [
  'root ::= "\\n" para "\\n\\n" para "\\n\\n### User"',
  "para ::= s s s s",
  's ::= "Every " w " needs a " w ", and the " w " shapes the " w ". "',
  wordRule,
].join("\n");
