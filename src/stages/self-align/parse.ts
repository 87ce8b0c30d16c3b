/**
 * Read a stage-2 completion: the internal thoughts (which must open with the assistant's fixed sentence), the
 * answer after the answer marker, and the principles the thoughts cite ("rules 2 (informative), 7 (candor)").
 */
import type { Principle } from "../../constitution/constitution-schema.js";

export interface SplitCompletion {
  thoughts: string;
  /** Text after the first answer marker, untrimmed; undefined when the marker never came. */
  answer?: string;
}

/** Split at the first "\n\n{name}:" marker. The completion starts right after the internal-thoughts cue. */
export function splitThoughtsAndAnswer(completion: string, answerMarker: string): SplitCompletion {
  const marker = `\n\n${answerMarker}`;
  const at = completion.indexOf(marker);
  if (at < 0) return { thoughts: completion.trim() };
  return { thoughts: completion.slice(0, at).trim(), answer: completion.slice(at + marker.length) };
}

/**
 * Ids of the principles cited in the thoughts, in order of first mention: "N (label)" pairs (the number decides
 * when the label also names that principle; a label naming another principle wins over a wrong number), bare
 * "rule N" numbers, and principle names mentioned in a sentence about rules. The opening sentence is ignored, so
 * words like "helpful" in it do not count.
 */
export function citedPrinciples(
  thoughts: string,
  principles: readonly Pick<Principle, "id" | "number" | "name">[],
  opening = "",
): string[] {
  const body = opening !== "" && thoughts.startsWith(opening) ? thoughts.slice(opening.length) : thoughts;
  const byNumber = new Map(principles.map((p) => [p.number, p]));
  const byName = new Map(principles.map((p) => [p.name.toLowerCase(), p]));
  // Longest names first, so "balanced perspectives" is not read as a shorter name inside it.
  const names = [...byName.keys()].sort((a, b) => b.length - a.length);
  const cited: string[] = [];
  const cite = (id: string | undefined) => {
    if (id !== undefined && !cited.includes(id)) cited.push(id);
  };
  for (const sentence of body.split(/(?<=[.!?])\s+/)) {
    if (!/\b(rule|rules|principle|principles|follow)\b/i.test(sentence)) continue;
    // Numbers with labels, bare numbers and bare names, in the order they appear in the sentence.
    const pattern = /(\d+)\s*\(([^)]*)\)|\b(\d+)\b|([A-Za-z][A-Za-z -]*[A-Za-z])/g;
    for (const match of sentence.matchAll(pattern)) {
      if (match[1] !== undefined) {
        const numbered = byNumber.get(Number(match[1]));
        const named = byName.get(match[2]!.trim().toLowerCase());
        cite(numbered && (named === undefined || named === numbered) ? numbered.id : (named?.id ?? numbered?.id));
      } else if (match[3] !== undefined) {
        cite(byNumber.get(Number(match[3]))?.id);
      } else if (match[4] !== undefined) {
        const words = ` ${match[4].toLowerCase()} `;
        const found: { at: number; id: string }[] = [];
        let rest = words;
        for (const name of names) {
          const at = rest.indexOf(` ${name} `);
          if (at >= 0) {
            found.push({ at, id: byName.get(name)!.id });
            rest = rest.slice(0, at) + " ".repeat(name.length + 2) + rest.slice(at + name.length + 2);
          }
        }
        for (const hit of found.sort((a, b) => a.at - b.at)) cite(hit.id);
      }
    }
  }
  return cited;
}
