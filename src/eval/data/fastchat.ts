import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { parseJsonLines, readDataFile, validateData } from "./read-data-file.js";

const questionId = z.union([z.number(), z.string().min(1)], { message: "must be a number or a non-empty string" });
const turnText = z.string({ message: "turns must be texts" });

export const fastChatQuestionSchema = z.looseObject({
  question_id: questionId,
  category: z.string().optional(),
  turns: z.array(turnText, { message: "must be a list of user turns" }).min(1, "needs at least one turn"),
  /** Reference answers (MT-bench math, reasoning and coding). */
  reference: z.array(z.string()).optional(),
});
export type FastChatQuestion = z.infer<typeof fastChatQuestionSchema>;

export const fastChatAnswerSchema = z.looseObject({
  question_id: questionId,
  answer_id: z.string().optional(),
  model_id: z.string().min(1, "must name the model"),
  choices: z
    .array(z.looseObject({ index: z.number().optional(), turns: z.array(turnText) }), {
      message: "must be a list of {index, turns}",
    })
    .min(1, "needs at least one choice"),
  tstamp: z.number().optional(),
});
export type FastChatAnswer = z.infer<typeof fastChatAnswerSchema>;

const judgeName = z.union([z.string(), z.array(z.string())]);
export const fastChatSingleJudgmentSchema = z.looseObject({
  question_id: questionId,
  model: z.string(),
  judge: judgeName,
  user_prompt: z.string().optional(),
  judgment: z.string(),
  score: z.number(),
  turn: z.number().int().min(1),
  tstamp: z.number().optional(),
});
export const fastChatPairwiseJudgmentSchema = z.looseObject({
  question_id: questionId,
  model_1: z.string(),
  model_2: z.string(),
  g1_winner: z.string(),
  g2_winner: z.string(),
  judge: judgeName,
  g1_user_prompt: z.string().optional(),
  g1_judgment: z.string().optional(),
  g2_user_prompt: z.string().optional(),
  g2_judgment: z.string().optional(),
  turn: z.number().int().min(1),
  tstamp: z.number().optional(),
});
export type FastChatSingleJudgment = z.infer<typeof fastChatSingleJudgmentSchema>;
export type FastChatPairwiseJudgment = z.infer<typeof fastChatPairwiseJudgmentSchema>;
export type FastChatJudgment = FastChatSingleJudgment | FastChatPairwiseJudgment;

const questionsExpected =
  'FastChat question.jsonl: one {"question_id": 81, "category": "writing", "turns": ["...", "..."]} per line';
const answersExpected =
  'FastChat answer jsonl: one {"question_id": 81, "model_id": "name", "choices": [{"index": 0, "turns": ["..."]}]} per line';
const judgmentsExpected =
  "FastChat judgment jsonl: one single-answer {question_id, model, judge, judgment, score, turn} or pairwise " +
  "{question_id, model_1, model_2, g1_winner, g2_winner, judge, turn} per line";

async function loadJsonl<T>(path: string, schema: z.ZodType<T>, expected: string): Promise<T[]> {
  const text = await readDataFile(path, expected);
  const records = parseJsonLines(text, path, expected).map(({ line, value }) =>
    validateData(schema, value, { path, line }, expected),
  );
  if (records.length === 0) throw new ConfigError(`is empty; expected ${expected}`, { path });
  return records;
}

/** Load a question set; question ids must be unique. */
export async function loadFastChatQuestions(path: string): Promise<FastChatQuestion[]> {
  const questions = await loadJsonl(path, fastChatQuestionSchema, questionsExpected);
  const seen = new Set<string>();
  questions.forEach((question, index) => {
    const key = String(question.question_id);
    if (seen.has(key)) {
      throw new ConfigError(`question_id ${key} appears twice; each question needs its own id`, {
        path,
        field: `[${index}].question_id`,
      });
    }
    seen.add(key);
  });
  return questions;
}

export async function loadFastChatAnswers(path: string): Promise<FastChatAnswer[]> {
  return loadJsonl(path, fastChatAnswerSchema, answersExpected);
}

export async function loadFastChatJudgments(path: string): Promise<FastChatJudgment[]> {
  const text = await readDataFile(path, judgmentsExpected);
  return parseJsonLines(text, path, judgmentsExpected).map(({ line, value }) => {
    const pairwise = value !== null && typeof value === "object" && "model_1" in value;
    return pairwise
      ? validateData(fastChatPairwiseJudgmentSchema, value, { path, line }, judgmentsExpected)
      : validateData(fastChatSingleJudgmentSchema, value, { path, line }, judgmentsExpected);
  });
}

export { writeJsonLines } from "../../run-store/json-file.js";
