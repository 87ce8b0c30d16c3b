/**
 * Choosing the thread count of small decode batches by measuring. Whether more threads pay for a decode call depends
 * on the machine more than on the model: on a 2-vCPU VM every multi-threaded llama.cpp decode call paid a fixed ~12 ms
 * synchronisation cost (engine-notes 3e), so one sequence decoded faster on 1 thread (a 269M model: 42 vs 37 tokens/s)
 * while 4 sequences decoded faster on 2 (78 vs 44); on a laptop with real cores the cost is microseconds and all cores
 * win. So each size class of batch tries every candidate a few times, keeps the fastest per token, and tries again now
 * and then, as the load of the machine changes. Candidates are tried in runs, and a call right after the thread count
 * changed is not counted: llama.cpp's idle workers keep spinning for a while after a multi-threaded call, so
 * alternating call by call made a 1-thread call look up to three times slower than it is; and the first calls with
 * new workers are fast while they are still awake, the synchronisation cost appearing a few calls later. Each
 * candidate is judged by the mean of its counted calls without the slowest (one busy moment of the machine).
 */

/** Decode calls counted per candidate before choosing. */
const samplesEach = 6;
/** Calls right after a change of thread count that are not counted (idle workers of the old count still spin). */
const settleCalls = 2;
/** A size class stops discarding after this many calls (sizes alternating between classes that use different
 * thread counts would otherwise switch before every call, and the measurement would never end). */
const maxDiscarded = 8;
/** Calls in a size class after which its choice is measured again. */
const recheckEvery = 512;

interface SizeClass {
  /** Recent ms per token by candidate thread count. */
  samples: Map<number, number[]>;
  /** Calls not counted in the current measurement. */
  discarded: number;
  chosen?: number;
  callsSinceChoice: number;
}

export class ThreadChooser {
  private readonly classes = new Map<number, SizeClass>();

  /** `candidates`: the thread counts to try (e.g. 1 and all cores), distinct positive integers. */
  constructor(readonly candidates: readonly number[]) {}

  /** Size class of a batch: 1, 2-3, 4-7, 8-15, 16-31, 32 and more tokens. */
  private classOf(tokens: number): SizeClass {
    const key = Math.min(5, Math.floor(Math.log2(Math.max(1, tokens))));
    let sizeClass = this.classes.get(key);
    if (!sizeClass) {
      sizeClass = {
        samples: new Map(this.candidates.map((threads) => [threads, []])),
        discarded: 0,
        callsSinceChoice: 0,
      };
      this.classes.set(key, sizeClass);
    }
    return sizeClass;
  }

  /** The thread count to decode a batch of `tokens` tokens with. */
  choose(tokens: number): number {
    const sizeClass = this.classOf(tokens);
    if (sizeClass.chosen !== undefined) {
      if (++sizeClass.callsSinceChoice < recheckEvery) return sizeClass.chosen;
      sizeClass.chosen = undefined;
      sizeClass.discarded = 0;
      for (const samples of sizeClass.samples.values()) samples.length = 0;
    }
    // Still measuring: the first candidate that has too few samples, so each is measured in one run of calls.
    for (const [threads, samples] of sizeClass.samples) if (samples.length < samplesEach) return threads;
    return this.candidates[0] as number;
  }

  /**
   * Report how long a decode of `tokens` tokens took with `threads` threads. `callsSinceSwitch`: decode calls made
   * since the thread count last changed, 0 when it changed for this one (the first calls after a change do not count).
   */
  record(tokens: number, threads: number, milliseconds: number, callsSinceSwitch = Number.POSITIVE_INFINITY): void {
    const sizeClass = this.classOf(tokens);
    const samples = sizeClass.samples.get(threads);
    if (!samples || sizeClass.chosen !== undefined) return;
    if (callsSinceSwitch < settleCalls && sizeClass.discarded < maxDiscarded) {
      sizeClass.discarded++;
      return;
    }
    samples.push(milliseconds / Math.max(1, tokens));
    if ([...sizeClass.samples.values()].some((s) => s.length < samplesEach)) return;
    let best = this.candidates[0] as number;
    let bestTime = Number.POSITIVE_INFINITY;
    for (const [candidate, times] of sizeClass.samples) {
      const sorted = [...times].sort((a, b) => a - b).slice(0, -1);
      const mean = sorted.reduce((sum, time) => sum + time, 0) / sorted.length;
      if (mean < bestTime) {
        bestTime = mean;
        best = candidate;
      }
    }
    sizeClass.chosen = best;
    sizeClass.callsSinceChoice = 0;
  }

  /** The thread count chosen for each size class so far (for diagnostics), keyed by the class's smallest size. */
  choices(): Record<number, number> {
    const out: Record<number, number> = {};
    for (const [key, sizeClass] of this.classes) if (sizeClass.chosen !== undefined) out[2 ** key] = sizeClass.chosen;
    return out;
  }
}
