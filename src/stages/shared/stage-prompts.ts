/** The stage-1 prompts of a run (self-instruct, then red-team), as the stages that answer them read them. */
import { z } from "zod";
import { promptFileFormats, readPrompts } from "../../data/read-prompts.js";
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

/**
 * The option of stages that answer prompts: a file of your own prompts to answer instead of the run's stage-1
 * prompts (Alpaca JSON/JSONL, `messages` JSONL, one prompt per line, or Parquet as the Hugging Face hub serves it).
 */
export const promptsFileSchema = z
  .strictObject({
    path: z.string().min(1).describe("the prompt file"),
    format: z.enum(promptFileFormats).optional().describe("default: from the file name"),
    fields: z
      .strictObject({
        instruction: z.string().optional(),
        input: z.string().optional(),
        messages: z.string().optional(),
      })
      .optional()
      .describe('columns named otherwise, e.g. {"input": "context"}'),
  })
  .optional()
  .describe('a prompt file to answer instead of the stage-1 prompts (JSON, e.g. {"path": "prompts.jsonl"})');
export type PromptsFile = z.infer<typeof promptsFileSchema>;

/** The prompts a stage answers: those of `file` when given, else the kept records of the upstream stages. */
export async function readStagePromptsOrFile(
  context: Pick<StageContext<unknown>, "upstreamRecords" | "resolvePath">,
  file: PromptsFile,
  stages: readonly string[] = promptSourceStages,
): Promise<StagePrompt[]> {
  if (!file) return readStagePrompts(context, stages);
  const { prompts } = await readPrompts(context.resolvePath(file.path), {
    ...(file.format ? { format: file.format } : {}),
    ...(file.fields ? { fields: file.fields } : {}),
  });
  return prompts;
}
