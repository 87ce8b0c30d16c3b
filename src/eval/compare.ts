/** `selfalign eval compare a.json b.json`: every aggregate metric of two results and the delta (b - a). */
import { z } from "zod";
import { defineEval } from "./eval-definition.js";
import { compareEvalResults, formatComparison, itemSetDifference, readEvalResult } from "./eval-result.js";

function someIds(ids: readonly string[]): string {
  return `${ids.slice(0, 5).join(", ")}${ids.length > 5 ? `, ... (${ids.length - 5} more)` : ""}`;
}

export const compareEval = defineEval({
  name: "compare",
  description: "Table of aggregate metrics of two eval.json files and their differences (b - a).",
  arguments: [
    { name: "a", description: "first eval.json" },
    { name: "b", description: "second eval.json" },
  ],
  options: z.object({}),
  async load(_options, [a, b]) {
    const [left, right] = await Promise.all([readEvalResult(a!), readEvalResult(b!)]);
    return { paths: [a!, b!] as [string, string], left, right };
  },
  async run({ paths: [a, b], left, right }) {
    const warnings: string[] = [];
    if (left.task !== right.task) warnings.push(`comparing different tasks (${left.task} vs ${right.task})`);
    const difference = itemSetDifference(left, right);
    if (difference) {
      const only = (ids: string[], path: string) =>
        ids.length > 0 ? [`${ids.length} only in ${path} (${someIds(ids)})`] : [];
      warnings.push(
        `${a} and ${b} scored different items: ${[...only(difference.onlyA, a), ...only(difference.onlyB, b)].join("; ")}. ` +
          "Their aggregates average over different questions (other data, or items skipped in one), so the deltas " +
          "are not a like-for-like comparison",
      );
    }
    return { text: `${formatComparison(compareEvalResults(left, right), [a, b])}\n`, notes: [], warnings };
  },
});
