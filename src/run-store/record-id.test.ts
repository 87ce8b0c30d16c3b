import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson, recordId } from "./record-id.js";

describe("recordId", () => {
  it("is 20 hex characters and ignores object key order", () => {
    const a = recordId("self-align", { parentId: "p1", sample: 0, config: { temperature: 0.7, topP: 0.9 } });
    const b = recordId("self-align", { config: { topP: 0.9, temperature: 0.7 }, sample: 0, parentId: "p1" });
    expect(a).toMatch(/^[0-9a-f]{20}$/);
    expect(a).toBe(b);
  });

  it("changes when any part changes", () => {
    const base = recordId("self-align", "p1", 0);
    expect(recordId("self-align", "p1", 1)).not.toBe(base);
    expect(recordId("self-instruct", "p1", 0)).not.toBe(base);
    expect(recordId("self-align", "p10")).not.toBe(recordId("self-align", "p1", 0));
  });

  it("canonical JSON round-trips to an equal value with sorted keys", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalJson(value);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
      }),
    );
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: undefined }] })).toBe('{"a":[{"d":2}],"b":1}');
  });
});
