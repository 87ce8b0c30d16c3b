/**
 * ROUGE-L dedup benchmark: the brute-force "compare with every accepted item" loop against DedupIndex on the same
 * deterministic synthetic instruction stream (with realistic near-duplicates), checking identical decisions, then
 * the index alone at the paper's scale. Run: `npx tsx bench/dedup.ts [--small N] [--large N]`.
 * Prints wall and CPU time: on a shared machine wall time includes waiting for other processes, CPU time does not.
 */
import { mulberry32 } from "../src/random/mulberry32.js";
import { DedupIndex } from "../src/text/dedup-index.js";
import { lcsFMeasure, rougeTokenize } from "../src/text/rouge-l.js";

const verbs = [
  "Write",
  "Explain",
  "Describe",
  "Summarize",
  "List",
  "Compare",
  "Suggest",
  "Create",
  "Give",
  "Outline",
  "Identify",
  "Classify",
  "Generate",
  "Rewrite",
  "Translate",
  "Analyze",
  "Propose",
  "Draft",
  "Evaluate",
  "Recommend",
];
const forms = [
  "a short story",
  "a haiku",
  "an email",
  "a limerick",
  "a product description",
  "a tweet",
  "a speech",
  "an essay outline",
  "a recipe",
  "a dialogue",
  "a riddle",
  "a news headline",
  "a cover letter",
  "a poem",
  "a joke",
];
const audiences = [
  "a five-year-old",
  "a beginner",
  "a busy manager",
  "a high school student",
  "an expert",
  "a tourist",
  "a new employee",
  "a retired teacher",
  "a skeptical investor",
  "a nurse",
];
const adjectives = [
  "ancient",
  "modern",
  "urban",
  "rural",
  "digital",
  "renewable",
  "medieval",
  "tropical",
  "quantum",
  "social",
  "financial",
  "cultural",
  "marine",
  "volcanic",
  "nocturnal",
  "remote",
  "public",
  "private",
  "seasonal",
  "industrial",
  "ethical",
  "legal",
  "musical",
  "culinary",
  "arctic",
  "desert",
  "orbital",
  "microbial",
  "civic",
  "rare",
];
const nouns = [
  "gardening",
  "economics",
  "architecture",
  "photosynthesis",
  "volcanoes",
  "bees",
  "libraries",
  "taxes",
  "friendship",
  "chess",
  "recycling",
  "bridges",
  "vaccines",
  "forests",
  "rivers",
  "elections",
  "poetry",
  "robots",
  "coffee",
  "migration",
  "sleep",
  "memory",
  "markets",
  "oceans",
  "glaciers",
  "startups",
  "painting",
  "trains",
  "satellites",
  "insurance",
  "weddings",
  "dinosaurs",
  "cheese",
  "typography",
  "ethics",
  "languages",
  "tea",
  "fungi",
  "castles",
  "podcasts",
  "bicycles",
  "deserts",
  "storms",
  "museums",
  "wolves",
  "ceramics",
  "jazz",
  "algebra",
];
const goals = [
  "save money",
  "learn faster",
  "sleep better",
  "reduce stress",
  "stay focused",
  "make friends",
  "cook healthy meals",
  "improve writing",
  "prepare for an interview",
  "start running",
  "grow tomatoes",
  "read more books",
  "organize a closet",
  "plan a trip",
  "negotiate a salary",
];

function pick<T>(random: () => number, list: readonly T[]): T {
  return list[Math.floor(random() * list.length)]!;
}

const syllables = [
  "ka",
  "lo",
  "mi",
  "ten",
  "ra",
  "vis",
  "do",
  "pel",
  "su",
  "ar",
  "ne",
  "bo",
  "qui",
  "tra",
  "zen",
  "om",
  "li",
  "gra",
  "fe",
  "nu",
  "sco",
  "pa",
  "ri",
  "mon",
  "e",
  "ul",
  "sha",
  "ver",
  "ti",
  "an",
];

/** A 20,000-word content vocabulary drawn with a Zipf-like law, as content words are in real instructions. */
function contentWords(random: () => number): () => string {
  const vocabulary: string[] = [...nouns, ...adjectives, ...goals.flatMap((goal) => goal.split(" "))];
  while (vocabulary.length < 20_000) {
    let word = "";
    const parts = 2 + Math.floor(random() * 3);
    for (let k = 0; k < parts; k++) word += pick(random, syllables);
    vocabulary.push(word);
  }
  return () => vocabulary[Math.floor(vocabulary.length ** (0.35 + 0.65 * random())) - 1]!;
}

let content: () => string = () => "";

type Phrase = (random: () => number) => string;
const openers: Phrase[] = [
  (r: () => number) => `${pick(r, verbs)} ${pick(r, forms)} about`,
  (r: () => number) => `Explain to ${pick(r, audiences)} how`,
  (r: () => number) => `What are the ${3 + Math.floor(r() * 7)} best ways to ${pick(r, goals)} using`,
  () => `Give me a list of facts about`,
  (r: () => number) => `How would ${pick(r, audiences)} approach`,
  (r: () => number) => `${pick(r, verbs)} the pros and cons of`,
  (r: () => number) => `Is it true that people who ${pick(r, goals)} care about`,
  () => `Why do experts disagree about`,
  (r: () => number) => `${pick(r, verbs)} a plan that combines`,
  () => `Can you tell me the history of`,
  () => `Classify the following into categories:`,
  () => `Suggest a name for a company focused on`,
];
const closers: Phrase[] = [
  () => "",
  (r: () => number) => ` in ${2 + Math.floor(r() * 5)} sentences`,
  (r: () => number) => ` for ${pick(r, audiences)}`,
  () => ` and compare it with ${content()} ${content()}`,
  () => `, mentioning ${content()} and ${content()}`,
  () => ` without using the word ${content()}`,
  (r: () => number) => `, in the style of ${pick(r, forms)}`,
];

function freshInstruction(random: () => number): string {
  const subject = Array.from({ length: 2 + Math.floor(random() * 3) }, () => content()).join(" ");
  const end = random() < 0.5 ? "." : "?";
  return `${pick(random, openers)(random)} ${subject}${pick(random, closers)(random)}${end}`;
}

/** Edits a model makes when it repeats itself: a changed word, a dropped word, a polite prefix, a swapped clause. */
function nearDuplicate(random: () => number, base: string): string {
  const words = base.split(" ");
  switch (Math.floor(random() * 5)) {
    case 0:
      words[Math.floor(random() * words.length)] = pick(random, nouns);
      return words.join(" ");
    case 1:
      words.splice(Math.floor(random() * words.length), 1);
      return words.join(" ");
    case 2:
      return `Please ${base[0]!.toLowerCase()}${base.slice(1)}`;
    case 3:
      return `${base.replace(/[.?]$/, "")}, in simple words.`;
    default: {
      const cut = Math.max(1, Math.floor(words.length / 2));
      return [...words.slice(cut), ...words.slice(0, cut)].join(" ");
    }
  }
}

function syntheticInstructions(count: number, seed: number): string[] {
  const random = mulberry32(seed);
  content = contentWords(random);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    if (out.length > 0 && random() < 0.2) out.push(nearDuplicate(random, out[Math.floor(random() * out.length)]!));
    else out.push(freshInstruction(random));
  }
  return out;
}

/** Brute force as the reference does it (tokenise once, then LCS with every accepted item), with the max kept. */
function bruteForce(texts: string[], threshold: number): boolean[] {
  const accepted: string[][] = [];
  const decisions: boolean[] = [];
  const row = new Int32Array(1024);
  for (const text of texts) {
    const a = rougeTokenize(text);
    let max = 0;
    for (const b of accepted) {
      // Dynamic-programming LCS over string tokens.
      row.fill(0, 0, b.length + 1);
      for (let i = 0; i < a.length; i++) {
        let diagonal = 0;
        for (let j = 1; j <= b.length; j++) {
          const above = row[j]!;
          row[j] = a[i] === b[j - 1] ? diagonal + 1 : Math.max(above, row[j - 1]!);
          diagonal = above;
        }
      }
      const score = lcsFMeasure(row[b.length]!, a.length, b.length);
      if (score > max) max = score;
    }
    const keep = !(max > threshold);
    if (keep) accepted.push(a);
    decisions.push(keep);
  }
  return decisions;
}

function viaIndex(texts: string[], threshold: number): boolean[] {
  const index = new DedupIndex({ threshold });
  return texts.map((text, i) => index.offer(text, String(i)).keep);
}

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const small = argument("--small", 20_000);
const large = argument("--large", 250_000);
const threshold = 0.7;

/** CPU milliseconds of this process (user + system): unlike wall time, not inflated by other processes. */
const cpuMs = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
};

const texts = syntheticInstructions(small, 42);
let started = performance.now();
let cpuStarted = cpuMs();
const indexDecisions = viaIndex(texts, threshold);
const indexMs = performance.now() - started;
const indexCpuMs = cpuMs() - cpuStarted;
started = performance.now();
cpuStarted = cpuMs();
const bruteDecisions = bruteForce(texts, threshold);
const bruteMs = performance.now() - started;
const bruteCpuMs = cpuMs() - cpuStarted;
const mismatches = bruteDecisions.filter((keep, i) => keep !== indexDecisions[i]).length;
const kept = indexDecisions.filter(Boolean).length;
console.log(`dedup ${small} instructions (threshold ${threshold}): kept ${kept}, dropped ${small - kept}`);
console.log(`  brute force: ${(bruteMs / 1000).toFixed(2)} s wall, ${(bruteCpuMs / 1000).toFixed(2)} s CPU`);
console.log(`  DedupIndex:  ${(indexMs / 1000).toFixed(2)} s wall, ${(indexCpuMs / 1000).toFixed(2)} s CPU`);
console.log(
  `  speed-up:    ${(bruteMs / indexMs).toFixed(1)}x wall, ${(bruteCpuMs / indexCpuMs).toFixed(1)}x CPU (target >= 50x); ` +
    `decision mismatches: ${mismatches}`,
);
if (mismatches > 0) process.exitCode = 1;

const largeTexts = syntheticInstructions(large, 7);
started = performance.now();
cpuStarted = cpuMs();
const largeIndex = new DedupIndex({ threshold });
let largeKept = 0;
for (let i = 0; i < largeTexts.length; i++) {
  if (largeIndex.offer(largeTexts[i]!, String(i)).keep) largeKept++;
}
const largeMs = performance.now() - started;
const largeCpuMs = cpuMs() - cpuStarted;
console.log(
  `dedup ${large} instructions with DedupIndex alone: ${(largeMs / 1000).toFixed(1)} s wall, ` +
    `${(largeCpuMs / 1000).toFixed(1)} s CPU (target < 600 s), kept ${largeKept}`,
);
