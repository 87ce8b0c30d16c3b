import { describe, expect, it } from "vitest";
import type { GroupRoundContext } from "../../pipeline/stage-definition.js";
import { emptyManifest } from "../../run-store/manifest.js";
import { isheepStopBefore } from "./definition.js";

/** A group context whose manifests hold the given figures: keptRate[r] and score[r] (round 0: the base's score). */
function context(options: Record<string, unknown>, keptRate: number[], score: number[]): GroupRoundContext {
  return {
    runDir: "/nowhere",
    options,
    manifest: async (stage, round) => {
      const manifest = emptyManifest(stage);
      if (stage === "isheep-keep" && keptRate[round] !== undefined) manifest.extra.keptRate = keptRate[round];
      if (stage === "isheep-eval" && score[round] !== undefined) {
        manifest.extra.score = score[round];
        if (round === 1 && score[0] !== undefined) manifest.extra.baseScore = score[0];
      }
      return manifest;
    },
  };
}

describe("I-SHEEP early stopping", () => {
  it("stops when the watched figure of the last round does not beat the one before by more than minGain", async () => {
    const kept = [Number.NaN, 0.5, 0.6, 0.58];
    const scores = [5, 6, 6.5, 6.4];
    expect(await isheepStopBefore(3, context({ stopOn: ["kept-rate"] }, kept, scores))).toBeUndefined();
    expect(await isheepStopBefore(4, context({ stopOn: ["kept-rate"] }, kept, scores))).toMatch(
      /^stopped before round 4: round 3's kept rate 0\.580 did not beat round 2's 0\.600 by more than 0$/,
    );
    expect(await isheepStopBefore(3, context({ stopOn: ["kept-rate"], minGain: 0.2 }, kept, scores))).toMatch(
      /round 2's kept rate 0\.600 did not beat round 1's 0\.500 by more than 0\.2/,
    );
    // The eval score of round 1 is compared with the base model's (round 0).
    expect(await isheepStopBefore(2, context({ stopOn: ["eval-score"] }, kept, [7, 6.9]))).toMatch(
      /round 1's eval score 6\.900 did not beat the base model's 7\.000/,
    );
    expect(await isheepStopBefore(2, context({ stopOn: ["eval-score"] }, kept, scores))).toBeUndefined();
    expect(await isheepStopBefore(4, context({ stopOn: ["eval-score", "kept-rate"] }, kept, scores))).toMatch(
      /eval score 6\.400 did not beat round 2's 6\.500/,
    );
    // Nothing watched, or a figure missing (eval off): go on.
    expect(await isheepStopBefore(4, context({}, kept, scores))).toBeUndefined();
    expect(await isheepStopBefore(4, context({ stopOn: ["eval-score"] }, kept, []))).toBeUndefined();
  });
});
