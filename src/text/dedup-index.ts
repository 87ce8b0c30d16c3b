/**
 * Exact, sub-quadratic ROUGE-L near-duplicate filter (Self-Instruct's "drop if ROUGE-L with any seed or accepted
 * instruction > 0.7"). Decisions equal the brute-force loop; only pairs that provably cannot exceed the threshold
 * are skipped.
 *
 * Why it is exact: LCS(a, b) <= m, the size of the shared token multiset, and the F-measure grows with the LCS, so a
 * pair whose F bound at lcs = min(m, |a|, |b|) is <= threshold can never match. Candidates come from an inverted
 * index; the candidate's most common tokens are left out of the scan (prefix filtering) only while their total
 * count stays at or below the largest shared mass that can never reach the threshold for any partner length, so an
 * item reachable only through skipped tokens is provably not a match.
 */
import { lcsFMeasure, lcsLength, rougeTokenize } from "./rouge-l.js";

export interface DedupCheck {
  /** False when some indexed item has ROUGE-L > threshold with the candidate. */
  keep: boolean;
  /**
   * Highest ROUGE-L among the items that were verified exactly. When `keep` is false this is the exact maximum over
   * every indexed item; when `keep` is true every unverified item is known to be <= threshold, so this is a lower
   * bound of the true maximum (and itself <= threshold).
   */
  maxScore: number;
  /** Id of the item reaching `maxScore` (the earliest added on ties); undefined when nothing was verified. */
  nearest?: string;
}

export interface DedupIndexOptions {
  /** Drop when ROUGE-L is strictly greater than this. Default 0.7. Must lie in [0, 1]. */
  threshold?: number;
}

export interface DedupIndexJson {
  threshold: number;
  items: { id: string; text: string }[];
}

interface IndexedItem {
  id: string;
  text: string;
  /** Token ids in order. */
  sequence: Int32Array;
  /** Distinct token ids, ascending, with their counts. */
  distinct: Int32Array;
  counts: Int32Array;
}

export class DedupIndex {
  readonly threshold: number;
  private readonly vocabulary = new Map<string, number>();
  /** Per token: the items holding it, and how often each holds it. */
  private readonly postings: number[][] = [];
  private readonly postingCounts: number[][] = [];
  private lengths = new Int32Array(1024);
  private readonly items: IndexedItem[] = [];
  private accumulator = new Int32Array(1024);
  private readonly maxSkippableMass = new Map<number, number>();
  private readonly lengthRange = new Map<number, [number, number]>();
  private readonly matchMasks = new Map<number, number>();

  constructor(options: DedupIndexOptions = {}) {
    const threshold = options.threshold ?? 0.7;
    if (!(threshold >= 0 && threshold <= 1)) throw new RangeError(`threshold must lie in [0, 1], got ${threshold}`);
    this.threshold = threshold;
  }

  get size(): number {
    return this.items.length;
  }

  /** Add an item unconditionally (seeds, or an accepted candidate). */
  add(text: string, id: string = String(this.items.length)): void {
    const item = this.encode(text, true, id);
    const index = this.items.length;
    this.items.push(item);
    for (let k = 0; k < item.distinct.length; k++) {
      this.postings[item.distinct[k]!]!.push(index);
      this.postingCounts[item.distinct[k]!]!.push(item.counts[k]!);
    }
    if (this.accumulator.length <= index) {
      const grown = new Int32Array(this.accumulator.length * 2);
      grown.set(this.accumulator);
      this.accumulator = grown;
      const lengths = new Int32Array(this.lengths.length * 2);
      lengths.set(this.lengths);
      this.lengths = lengths;
    }
    this.lengths[index] = item.sequence.length;
  }

  /** Check a candidate against every indexed item without adding it. */
  check(text: string): DedupCheck {
    const candidate = this.encode(text, false, "");
    const lengthA = candidate.sequence.length;
    let best = -1;
    let bestIndex = -1;
    let dropped = false;
    if (lengthA === 0 || this.items.length === 0) return { keep: true, maxScore: 0 };

    // Scan the rarest tokens; leave out the most common ones while their mass stays provably harmless.
    const order: number[] = [];
    for (let k = 0; k < candidate.distinct.length; k++) order.push(k);
    order.sort((x, y) => this.postingLength(candidate.distinct[y]!) - this.postingLength(candidate.distinct[x]!));
    const skippable = this.skippableMass(lengthA);
    let skippedMass = 0;
    let firstScanned = 0;
    while (firstScanned < order.length) {
      const count = candidate.counts[order[firstScanned]!]!;
      if (skippedMass + count > skippable) break;
      skippedMass += count;
      firstScanned++;
    }

    const touched: number[] = [];
    const accumulator = this.accumulator;
    const lengths = this.lengths;
    const [shortest, longest] = this.feasibleLengths(lengthA);
    for (let o = firstScanned; o < order.length; o++) {
      const k = order[o]!;
      const token = candidate.distinct[k]!;
      const candidateCount = candidate.counts[k]!;
      const list = this.postings[token];
      if (list === undefined) continue;
      const counts = this.postingCounts[token]!;
      for (let p = 0; p < list.length; p++) {
        const index = list[p]!;
        // A partner whose length alone keeps F <= threshold (lcs <= the shorter length) needs no look.
        const lengthB = lengths[index]!;
        if (lengthB < shortest || lengthB > longest) continue;
        const itemCount = counts[p]!;
        if (accumulator[index] === 0) touched.push(index);
        accumulator[index] = accumulator[index]! + (candidateCount < itemCount ? candidateCount : itemCount);
      }
    }

    for (const index of touched) {
      const partial = accumulator[index]!;
      accumulator[index] = 0;
      const item = this.items[index]!;
      const lengthB = item.sequence.length;
      const cap = Math.min(lengthA, lengthB);
      // Cheap bound first (scanned share + everything skipped), then the exact shared multiset.
      if (lcsFMeasure(Math.min(partial + skippedMass, cap), lengthA, lengthB) <= this.threshold) continue;
      const shared = sharedMass(candidate, item);
      if (lcsFMeasure(Math.min(shared, cap), lengthA, lengthB) <= this.threshold) continue;
      const score = lcsFMeasure(this.lcs(candidate.sequence, item.sequence), lengthA, lengthB);
      if (score > best || (score === best && index < bestIndex)) {
        best = score;
        bestIndex = index;
      }
      if (score > this.threshold) dropped = true;
    }
    if (bestIndex < 0) return { keep: true, maxScore: 0 };
    return { keep: !dropped, maxScore: best, nearest: this.items[bestIndex]!.id };
  }

  /** Check, and add the candidate when it is kept. */
  offer(text: string, id?: string): DedupCheck {
    const result = this.check(text);
    if (result.keep) this.add(text, id);
    return result;
  }

  toJSON(): DedupIndexJson {
    return { threshold: this.threshold, items: this.items.map((item) => ({ id: item.id, text: item.text })) };
  }

  static fromJSON(json: DedupIndexJson): DedupIndex {
    const index = new DedupIndex({ threshold: json.threshold });
    for (const item of json.items) index.add(item.text, item.id);
    return index;
  }

  /** The partner lengths for which the length bound (lcs <= min length) can exceed the threshold. */
  private feasibleLengths(lengthA: number): [number, number] {
    const cached = this.lengthRange.get(lengthA);
    if (cached !== undefined) return cached;
    const feasible = (lengthB: number) => lcsFMeasure(Math.min(lengthA, lengthB), lengthA, lengthB) > this.threshold;
    let shortest = 1;
    while (shortest <= lengthA && !feasible(shortest)) shortest++;
    // Above |a|, F <= 2|a|/(|a|+|b|): solve for the bound, then settle the floating-point edge by stepping.
    const cap = 1e9;
    let longest = 0;
    if (feasible(lengthA)) {
      const estimate = this.threshold > 0 ? Math.floor((lengthA * (2 - this.threshold)) / this.threshold) + 2 : cap;
      longest = Math.max(lengthA, Math.min(estimate, cap));
      while (longest > lengthA && !feasible(longest)) longest--;
      while (longest < cap && feasible(longest + 1)) longest++;
    }
    const range: [number, number] = shortest <= lengthA ? [shortest, longest] : [1, 0];
    this.lengthRange.set(lengthA, range);
    return range;
  }

  private postingLength(token: number): number {
    return this.postings[token]?.length ?? 0;
  }

  /**
   * Largest shared-token mass s such that no partner of any length can exceed the threshold with lcs <= s.
   * Memoised per candidate length.
   */
  private skippableMass(lengthA: number): number {
    const cached = this.maxSkippableMass.get(lengthA);
    if (cached !== undefined) return cached;
    // For a shared mass s <= |a|, F(min(s, |a|, |b|)) peaks at |b| = s (it rises as 2|b|/(|a|+|b|) below s and falls
    // as 2s/(|a|+|b|) above), so checking |b| = s and its neighbours covers every partner length.
    const reaches = (mass: number) => {
      for (let lengthB = Math.max(1, mass - 1); lengthB <= mass + 1; lengthB++) {
        if (lcsFMeasure(Math.min(mass, lengthA, lengthB), lengthA, lengthB) > this.threshold) return true;
      }
      return false;
    };
    let s = 0;
    while (s < lengthA && !reaches(s + 1)) s++;
    this.maxSkippableMass.set(lengthA, s);
    return s;
  }

  private encode(text: string, intern: boolean, id: string): IndexedItem {
    const tokens = rougeTokenize(text);
    const sequence = new Int32Array(tokens.length);
    const counts = new Map<number, number>();
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      let tokenId = this.vocabulary.get(token);
      if (tokenId === undefined) {
        if (intern) {
          tokenId = this.postings.length;
          this.vocabulary.set(token, tokenId);
          this.postings.push([]);
          this.postingCounts.push([]);
        } else {
          // Unknown to the index: a negative id (stable within this candidate) that matches nothing indexed.
          tokenId = -1 - tokens.indexOf(token);
        }
      }
      sequence[i] = tokenId;
      counts.set(tokenId, (counts.get(tokenId) ?? 0) + 1);
    }
    const distinct = Int32Array.from(counts.keys()).sort();
    const countArray = new Int32Array(distinct.length);
    for (let k = 0; k < distinct.length; k++) countArray[k] = counts.get(distinct[k]!)!;
    return { id, text, sequence, distinct, counts: countArray };
  }

  /** Exact LCS: bit-parallel (Hyyrö) when the shorter side fits in 32 bits, dynamic programming otherwise. */
  private lcs(a: Int32Array, b: Int32Array): number {
    const [pattern, text] = a.length <= b.length ? [a, b] : [b, a];
    if (pattern.length > 32) return lcsLength(Array.from(pattern), Array.from(text));
    const masks = this.matchMasks;
    masks.clear();
    for (let i = 0; i < pattern.length; i++) {
      const token = pattern[i]!;
      masks.set(token, ((masks.get(token) ?? 0) | (1 << i)) >>> 0);
    }
    let v = 0xffffffff;
    for (let j = 0; j < text.length; j++) {
      const match = masks.get(text[j]!);
      if (match === undefined) continue;
      const u = (v & match) >>> 0;
      v = (((v + u) >>> 0) | (v - u)) >>> 0;
    }
    const width = pattern.length;
    const live = width === 32 ? v : v & ((1 << width) - 1);
    return width - popcount(live >>> 0);
  }
}

function sharedMass(a: IndexedItem, b: IndexedItem): number {
  let i = 0;
  let j = 0;
  let shared = 0;
  while (i < a.distinct.length && j < b.distinct.length) {
    const x = a.distinct[i]!;
    const y = b.distinct[j]!;
    if (x === y) {
      shared += Math.min(a.counts[i]!, b.counts[j]!);
      i++;
      j++;
    } else if (x < y) i++;
    else j++;
  }
  return shared;
}

function popcount(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
