/** Stage 2's input: every kept stage-1 prompt of a run (self-instruct, then red-team), from merged folders first. */
import { readStageRecords } from "../shared/stage-records.js";
import type { SelfAlignInput } from "./run.js";

/** The stages whose kept records stage 2 answers, in the order they are read. */
const selfAlignSourceStages = ["self-instruct", "red-team"] as const;

/** Every kept stage-1 prompt of the run in `runDir`, in a stable order (stage, then file order). */
export async function readSelfAlignInputs(runDir: string): Promise<SelfAlignInput[]> {
  const inputs: SelfAlignInput[] = [];
  for (const stage of selfAlignSourceStages) {
    for (const record of await readStageRecords<SelfAlignInput>(runDir, stage)) {
      inputs.push({
        id: record.id,
        instruction: record.instruction,
        ...(record.input ? { input: record.input } : {}),
        ...(record.questionType ? { questionType: record.questionType } : {}),
        source: stage,
      });
    }
  }
  return inputs;
}
