import { describe, expect, it } from "vitest";
import { ThreadChooser } from "./thread-chooser.js";

/** Decode `calls` batches of `tokens` tokens where each call costs `cost(threads)` ms; returns the threads used. */
function drive(chooser: ThreadChooser, tokens: number, calls: number, cost: (threads: number) => number): number[] {
  const used: number[] = [];
  for (let i = 0; i < calls; i++) {
    const threads = chooser.choose(tokens);
    // Calls since the thread count changed, as the native-batch tuner counts them.
    sinceSwitch = threads === lastThreads ? sinceSwitch + 1 : 0;
    lastThreads = threads;
    used.push(threads);
    chooser.record(tokens, threads, cost(threads), sinceSwitch);
  }
  return used;
}
let lastThreads = -1;
let sinceSwitch = 0;

describe("ThreadChooser", () => {
  it("measures each candidate in a run of calls (two settling, six counted), then keeps the faster", () => {
    const chooser = new ThreadChooser([1, 8]);
    // A VM where each multi-threaded call pays 12 ms: 1 thread wins for one token per call.
    const used = drive(chooser, 1, 26, (threads) => 4 / threads + (threads > 1 ? 12 : 0));
    expect(used.slice(0, 16)).toEqual([...Array(8).fill(1), ...Array(8).fill(8)]);
    expect(used.slice(16)).toEqual(Array(10).fill(1));
    expect(chooser.choices()).toEqual({ 1: 1 });
  });

  it("chooses per batch size: many threads where the batch is big enough to pay for them", () => {
    const chooser = new ThreadChooser([1, 2]);
    const cost = (tokens: number) => (threads: number) => (tokens * 4) / threads + (threads > 1 ? 12 : 0);
    drive(chooser, 1, 16, cost(1));
    drive(chooser, 16, 16, cost(16));
    expect(chooser.choices()).toEqual({ 1: 1, 16: 2 });
    // 20 tokens is in the same class as 16: it uses the choice without measuring again.
    expect(chooser.choose(20)).toBe(2);
  });

  it("judges by the mean of the counted calls without the slowest, so one busy moment does not decide", () => {
    const chooser = new ThreadChooser([1, 4]);
    // Two settling calls, then six counted ones. 1 thread: mean 5 once its 60 ms outlier is dropped (else 14).
    // 4 threads: fast at first, then paying a synchronisation cost: mean 9.
    const times = new Map([
      [1, [9, 9, 5, 5, 60, 5, 5, 5]],
      [4, [2, 2, 2, 2, 12, 12, 12, 14]],
    ]);
    drive(chooser, 1, 16, (threads) => times.get(threads)!.shift()!);
    expect(chooser.choices()).toEqual({ 1: 1 });
  });

  it("does not count the calls right after the thread count changed", () => {
    const chooser = new ThreadChooser([1, 4]);
    // The first calls with 4 threads are fast while the new workers are awake; counted, they would make 4 threads win.
    const times = new Map([
      [1, [6, 6, 6, 6, 6, 6, 6, 6]],
      [4, [1, 1, 8, 8, 8, 8, 8, 8]],
    ]);
    drive(chooser, 1, 16, (threads) => times.get(threads)!.shift()!);
    expect(chooser.choices()).toEqual({ 1: 1 });
  });

  it("still decides when sizes alternate between classes that use different thread counts", () => {
    const chooser = new ThreadChooser([1, 2]);
    drive(chooser, 16, 16, (threads) => (threads === 2 ? 1 : 5)); // the 16-token class chooses 2 threads
    expect(chooser.choices()).toEqual({ 16: 2 });
    // Now calls alternate: 16 tokens (2 threads) and 1 token (measuring): every call switches the thread count.
    let last = 2;
    for (let i = 0; i < 60 && chooser.choices()[1] === undefined; i++) {
      for (const tokens of [16, 1]) {
        const threads = chooser.choose(tokens);
        chooser.record(tokens, threads, threads === 1 ? 1 : 3, threads === last ? 5 : 0);
        last = threads;
      }
    }
    expect(chooser.choices()).toEqual({ 16: 2, 1: 1 });
  });

  it("measures again after 512 calls, so a change in load is noticed", () => {
    const chooser = new ThreadChooser([1, 2]);
    drive(chooser, 1, 16, (threads) => (threads === 1 ? 1 : 5));
    expect(chooser.choices()).toEqual({ 1: 1 });
    // Now 2 threads have become faster: the choice holds until the re-check, then follows.
    const used = drive(chooser, 1, 600, (threads) => (threads === 1 ? 9 : 2));
    expect(used.slice(0, 500).every((threads) => threads === 1)).toBe(true);
    expect(used.slice(-5)).toEqual([2, 2, 2, 2, 2]);
    expect(chooser.choices()).toEqual({ 1: 2 });
  });
});
