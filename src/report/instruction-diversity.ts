/**
 * Instruction diversity as in the SELF-ALIGN paper's verb-noun figure, by a documented heuristic instead of a
 * constituency parser: the root verb is the instruction's first word (after polite openers such as "please" or
 * "can you") when that word is not a question word, auxiliary, pronoun or determiner; its direct object is the first
 * later word that is not a determiner, pronoun, preposition, number or common modifier. Questions ("What is ...")
 * have no imperative root verb and are counted apart.
 */

const politeOpeners = new Set(["please", "kindly", "can", "could", "would", "will", "you", "help", "me", "now"]);
const notVerbs = new Set(
  "what how why who whom whose when where which is are was were am be do does did have has had should shall may might must i we they he she it this that these those there here a an the my your our their if in on for to of and or not no yes".split(
    " ",
  ),
);
const skipBeforeObject = new Set(
  "a an the me us him her them it my your our their his its this that these those some any all each every few several many more most short brief simple new given following list of to for with about on in into from by as at up out down one two three four five six seven ten 3 5 10 20 good great best better quick detailed".split(
    " ",
  ),
);

export interface VerbNoun {
  verb: string;
  noun?: string;
}

/** Root verb and direct-object noun of an instruction, or undefined when it does not open with an imperative verb. */
export function rootVerbNoun(instruction: string): VerbNoun | undefined {
  const words = instruction.toLowerCase().match(/[a-z][a-z'-]*|\d+/g) ?? [];
  let at = 0;
  // "Can you write ..." / "Please write ..." : skip the polite opener when a verb follows.
  while (at < words.length - 1 && politeOpeners.has(words[at]!)) at++;
  const verb = words[at];
  if (!verb || notVerbs.has(verb) || /^\d/.test(verb)) return undefined;
  for (let i = at + 1; i < words.length; i++) {
    const word = words[i]!;
    if (!skipBeforeObject.has(word) && !/^\d/.test(word)) return { verb, noun: word };
  }
  return { verb };
}

export interface VerbNounCounts {
  verbs: Array<{ verb: string; count: number; nouns: Array<{ noun: string; count: number }> }>;
  /** Instructions without an imperative root verb (questions, statements). */
  withoutVerb: number;
  total: number;
}

/** Top `topVerbs` root verbs and, for each, its top `topNouns` direct objects. */
export function countVerbNouns(instructions: Iterable<string>, topVerbs = 20, topNouns = 4): VerbNounCounts {
  const byVerb = new Map<string, { count: number; nouns: Map<string, number> }>();
  let withoutVerb = 0;
  let total = 0;
  for (const instruction of instructions) {
    total++;
    const parsed = rootVerbNoun(instruction);
    if (!parsed) {
      withoutVerb++;
      continue;
    }
    const entry = byVerb.get(parsed.verb) ?? { count: 0, nouns: new Map<string, number>() };
    entry.count++;
    if (parsed.noun) entry.nouns.set(parsed.noun, (entry.nouns.get(parsed.noun) ?? 0) + 1);
    byVerb.set(parsed.verb, entry);
  }
  const byCount = <K>(a: [K, number], b: [K, number]) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0]));
  const verbs = [...byVerb.entries()]
    .map(([verb, e]) => [verb, e.count] as [string, number])
    .sort(byCount)
    .slice(0, topVerbs)
    .map(([verb, count]) => ({
      verb,
      count,
      nouns: [...byVerb.get(verb)!.nouns.entries()]
        .sort(byCount)
        .slice(0, topNouns)
        .map(([noun, n]) => ({ noun, count: n })),
    }));
  return { verbs, withoutVerb, total };
}
