/** The stage-1 prompts of a run (self-instruct, then red-team), as the stages that answer them read them. */
import type { StageContext } from "../../pipeline/stage-definition.js";
import type { StoreRecord } from "../../run-store/index.js";

/** A prompt to answer: the id of the record it came from, the instruction and its optional input. */
export interface StagePrompt {
  id: string;
  instruction: string;
  input?: string;
  questionType?: string;
  source?: string;
}

/** The stages whose kept records are the prompts answered in stages 2 and 4. */
export const promptSourceStages = ["self-instruct", "red-team"] as const;

/** Every kept prompt of the given upstream stages, in a stable order (stage, then file order). */
export async function readStagePrompts(
  context: Pick<StageContext<unknown>, "upstreamRecords">,
  stages: readonly string[] = promptSourceStages,
): Promise<StagePrompt[]> {
  const prompts: StagePrompt[] = [];
  for (const stage of stages) {
    for (const record of await context.upstreamRecords<StoreRecord>(stage)) {
      prompts.push({
        id: record.id,
        instruction: String(record.instruction),
        ...(record.input ? { input: String(record.input) } : {}),
        ...(record.questionType ? { questionType: String(record.questionType) } : {}),
        source: stage,
      });
    }
  }
  return prompts;
}
