import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { terminalSafe } from "./terminal-text.js";

describe("terminalSafe", () => {
  it("shows escape sequences and other controls as control pictures, keeping newlines, tabs and text", () => {
    expect(terminalSafe("red \x1b[31mtext\x1b[0m")).toBe("red \u241b[31mtext\u241b[0m");
    expect(terminalSafe("\x1b]0;pwned\x07title")).toBe("\u241b]0;pwned\u2407title");
    expect(terminalSafe("over\rwrite\bx\x7f")).toBe("over\u240dwrite\u2408x\u2421");
    expect(terminalSafe("c1 \u009b2J")).toBe("c1 \uFFFD2J");
    expect(terminalSafe("a\u202Egnp.exe\u2066b\u2069")).toBe("agnp.exeb");
    expect(terminalSafe("line one\n\tindented, ünïcödé, 日本語, 🙂")).toBe("line one\n\tindented, ünïcödé, 日本語, 🙂");
  });

  it("leaves nothing a terminal acts on", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (text) => {
        expect(terminalSafe(text)).not.toMatch(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/);
      }),
    );
  });

  it("is prefix-stable, so streamed pieces print the same as the whole", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.nat(), (text, cut) => {
        const prefix = text.slice(0, cut % (text.length + 1));
        expect(terminalSafe(text).startsWith(terminalSafe(prefix))).toBe(true);
      }),
    );
  });
});
