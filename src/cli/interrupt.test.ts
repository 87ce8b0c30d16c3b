import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { AbortedError, throwIfAborted } from "../errors/index.js";
import { stoppingNotice, withInterrupt } from "./interrupt.js";

class FakeProcess extends EventEmitter {
  exits: number[] = [];
  exit(code: number): void {
    this.exits.push(code);
  }
}

function fakeStream() {
  const stream = {
    text: "",
    write(chunk: string) {
      stream.text += chunk;
    },
  };
  return stream;
}

describe("withInterrupt", () => {
  it("aborts the signal on the first Ctrl+C and prints the notice once", async () => {
    const proc = new FakeProcess();
    const stderr = fakeStream();
    let interrupted = 0;
    const run = withInterrupt(
      async (signal) => {
        proc.emit("SIGINT");
        expect(signal.aborted).toBe(true);
        throwIfAborted(signal);
        return "finished";
      },
      { process: proc, stderr, onInterrupt: () => interrupted++ },
    );
    await expect(run).rejects.toBeInstanceOf(AbortedError);
    expect(stderr.text).toBe(`\n${stoppingNotice}\n`);
    expect(interrupted).toBe(1);
    expect(proc.exits).toEqual([]);
  });

  it("exits 130 on the second signal (SIGINT then SIGTERM)", async () => {
    const proc = new FakeProcess();
    const stderr = fakeStream();
    await withInterrupt(
      async () => {
        proc.emit("SIGINT");
        proc.emit("SIGTERM");
      },
      { process: proc, stderr },
    );
    expect(proc.exits).toEqual([130]);
  });

  it("removes its listeners when the work ends", async () => {
    const proc = new FakeProcess();
    const value = await withInterrupt(async (signal) => (signal.aborted ? "aborted" : "done"), {
      process: proc,
      stderr: fakeStream(),
    });
    expect(value).toBe("done");
    expect(proc.listenerCount("SIGINT")).toBe(0);
    expect(proc.listenerCount("SIGTERM")).toBe(0);
  });
});
