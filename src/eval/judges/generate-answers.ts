/**
 * Answers of the model under test (base model, or base + adapter) to a FastChat question set, in the model's chat
 * format (method-spec A.7: turns joined with "### User" / "### {Assistant}", stop at the next user turn). Each
 * question's turns are generated in order, with the model's own earlier answers in the prompt; questions run in
 * parallel. A question whose prompt cannot fit the model's context is skipped with its reason, not fatal.
 */
import { z } from "zod";
import {
  type Completion,
  completeAll,
  type LanguageModel,
  type SamplingOptions,
} from "../../backends/language-model.js";
import { ConfigError } from "../../errors/index.js";
import { recordId } from "../../run-store/record-id.js";
import { type FastChatQuestion, loadFastChatQuestions, writeJsonLines } from "../data/fastchat.js";
import { answerExamples } from "../answer-examples.js";
import {
  dataOption,
  defineEval,
  type EvalPaths,
  evalPaths,
  modelOptions,
  outputOptions,
  promptOptions,
  promptTemplateFor,
  runItemEval,
  withModels,
} from "../eval-definition.js";
import { type EvalResult, type EvalRunOptions, evalResultHead } from "../eval-result.js";
import { contextOverflow, type EvalOutcome, evaluateItems, isRequestRefused } from "../evaluate-items.js";
import {
  type ChatTurn,
  cleanAnswer,
  plainPromptTemplate,
  type PromptTemplate,
  renderChatPrompt,
} from "../prompt-template.js";

export interface GenerateAnswersOptions extends EvalRunOptions {
  model: LanguageModel;
  questions: readonly FastChatQuestion[];
  /** Name written as `model_id`. Default: the backend id. */
  modelId?: string;
  promptTemplate?: PromptTemplate;
  /** Default: temperature 0.7 (the paper's evaluations), topP 1, maxTokens 512, seed 0. */
  sampling?: SamplingOptions;
  /** Temperature by question category, over `sampling.temperature` (e.g. {@link mtBenchCategoryTemperatures}). */
  categoryTemperatures?: Readonly<Record<string, number>>;
  /** Finished exchanges put before every conversation (few-shot), e.g. `answerExamples` for a 2-shot prompt. */
  examples?: readonly Required<ChatTurn>[];
  /** Adapter loaded on `model`, recorded in eval.json. */
  adapter?: string;
}

/** A FastChat answer record (with our `id`, the question id) plus the exact prompts used for each turn. */
export const generatedAnswerSchema = z.object({
  id: z.string(),
  question_id: z.union([z.number(), z.string()]),
  answer_id: z.string(),
  model_id: z.string(),
  /** The sampling temperature used for this question. */
  temperature: z.number(),
  choices: z.array(z.object({ index: z.number(), turns: z.array(z.string()) })),
  tstamp: z.number(),
  prompts: z.array(z.string()),
  finishReasons: z.array(z.string()),
});
export type GeneratedAnswer = z.infer<typeof generatedAnswerSchema>;

export const defaultAnswerSampling: SamplingOptions = { temperature: 0.7, topP: 1, maxTokens: 512, seed: 0 };

/**
 * The temperatures FastChat's MT-bench answer generation uses per category: creative categories sampled, categories
 * with one right answer greedy, knowledge categories nearly greedy.
 */
export const mtBenchCategoryTemperatures: Readonly<Record<string, number>> = {
  writing: 0.7,
  roleplay: 0.7,
  extraction: 0,
  math: 0,
  coding: 0,
  reasoning: 0,
  stem: 0.1,
  humanities: 0.1,
  "arena-hard-200": 0,
};

export async function generateAnswers(options: GenerateAnswersOptions): Promise<EvalResult<GeneratedAnswer>> {
  const { model, questions } = options;
  const task = "generate-answers";
  const template = options.promptTemplate ?? plainPromptTemplate;
  const sampling = { ...defaultAnswerSampling, ...options.sampling };
  const examples = options.examples ?? [];
  const modelId = options.modelId ?? model.id;
  const settings = {
    modelId,
    promptTemplate: template,
    sampling,
    ...(options.categoryTemperatures ? { categoryTemperatures: options.categoryTemperatures } : {}),
    shots: examples.length,
  };
  // A question's sampling: its category's temperature where one is given.
  const samplingOf = (question: FastChatQuestion) => {
    const temperature = question.category ? options.categoryTemperatures?.[question.category] : undefined;
    return temperature === undefined ? sampling : { ...sampling, temperature };
  };
  const answer = async (question: FastChatQuestion, signal: AbortSignal): Promise<EvalOutcome<GeneratedAnswer>> => {
    const own = samplingOf(question);
    const turns: string[] = [];
    const prompts: string[] = [];
    const finishReasons: string[] = [];
    for (let turn = 0; turn < question.turns.length; turn++) {
      const history: ChatTurn[] = question.turns.slice(0, turn + 1).map((user, k) => ({
        user,
        ...(k < turn ? { assistant: turns[k]! } : {}),
      }));
      const prompt = renderChatPrompt(template, history, examples);
      const skip = (reason: { filter: string; reason: string }) => ({
        skipped: { ...reason, detail: { question: question.turns, answeredTurns: turns, prompt } },
      });
      const overflow = await contextOverflow(model, prompt, `turn ${turn + 1}`);
      if (overflow) return skip(overflow);
      let completion: Completion;
      try {
        const [result] = await completeAll(model, [{ ...own, prompt, stop: [...template.stop, ...(own.stop ?? [])] }], {
          signal,
        });
        completion = result!.completions[0]!;
      } catch (error) {
        if (!isRequestRefused(error)) throw error;
        return skip({ filter: "request-refused", reason: `turn ${turn + 1}: ${error.message}` });
      }
      prompts.push(prompt);
      turns.push(cleanAnswer(completion.text, template));
      finishReasons.push(completion.finishReason);
    }
    return {
      result: {
        id: String(question.question_id),
        question_id: question.question_id,
        answer_id: recordId(task, modelId, question.question_id, prompts, own),
        model_id: modelId,
        temperature: own.temperature ?? 1,
        choices: [{ index: 0, turns }],
        tstamp: Date.now() / 1000,
        prompts,
        finishReasons,
      },
    };
  };
  const { results, skipped } = await evaluateItems(
    {
      task,
      items: questions,
      itemId: (question) => String(question.question_id),
      backend: model,
      settings: { model: model.id, adapter: options.adapter ?? null, ...settings },
      resultSchema: generatedAnswerSchema,
      evaluate: answer,
    },
    options,
  );
  const allTurns = results.flatMap((item) => item.choices[0]!.turns);
  const reasons = results.flatMap((item) => item.finishReasons);
  return {
    ...evalResultHead(task, options, model.id),
    settings,
    aggregate: {
      n: results.length,
      skipped: skipped.length,
      turns: allTurns.length,
      meanAnswerChars: allTurns.reduce((sum, text) => sum + text.length, 0) / Math.max(1, allTurns.length),
      emptyAnswers: allTurns.filter((text) => text === "").length,
      stoppedAtLength: reasons.filter((reason) => reason === "length").length,
    },
    items: results,
    skipped: skipped.map(({ id, filter, reason }) => ({ id, filter, reason })),
    warnings: skipped.map((skip) => `question ${skip.id} skipped (${skip.filter}): ${skip.reason}`),
  };
}

/** --category-temperatures: "mt-bench" (FastChat's per-category temperatures) or a JSON object {category: t}. */
export function parseCategoryTemperatures(value: string): Record<string, number> {
  if (value === "mt-bench") return { ...mtBenchCategoryTemperatures };
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    Array.isArray(parsed) ||
    !Object.values(parsed).every((t) => typeof t === "number" && Number.isFinite(t) && t >= 0)
  ) {
    throw new ConfigError(
      `--category-temperatures must be "mt-bench" or a JSON object of non-negative numbers such as '{"writing": 0.7, "math": 0}', got ${JSON.stringify(value)}`,
    );
  }
  return parsed as Record<string, number>;
}

/** The options of answer generation, shared by `generate-answers` and the judges (when they generate). */
export const answerOptions = {
  ...promptOptions,
  temperature: z
    .number()
    .min(0, "must be 0 or more")
    .default(0.7)
    .meta({ description: "answer sampling temperature", placeholder: "<n>" }),
  maxTokens: z
    .number()
    .int()
    .min(1, "must be at least 1")
    .default(512)
    .meta({ description: "answer max new tokens per turn", placeholder: "<n>" }),
  categoryTemperatures: z.string().optional().meta({
    description: 'answer temperature by question category: "mt-bench" (FastChat\'s) or JSON like \'{"math": 0}\'',
    placeholder: "<spec>",
  }),
  shots: z
    .number()
    .int()
    .min(0)
    .max(answerExamples.length, `must be from 0 to ${answerExamples.length}`)
    .default(0)
    .meta({ description: "worked exchanges before each question (Dromedary used 2 on Vicuna)", placeholder: "<n>" }),
  modelId: z
    .string()
    .optional()
    .meta({ description: "model_id written with generated answers (default: the backend id)", placeholder: "<name>" }),
  answersOut: z.string().optional().meta({
    description: "where generated answers are written as FastChat jsonl (default answers-<out name>.jsonl)",
    placeholder: "<path>",
  }),
};

type AnswerOptions = z.infer<z.ZodObject<typeof answerOptions>> & { adapter?: string | undefined };

/**
 * Generate the answers of `model` as a definition does it: resumable in `store`, the FastChat answer file written
 * beside eval.json (or to `--answers-out`). Returns the result and the line telling the user where the answers are.
 */
export async function generateAnswersInto(
  model: LanguageModel,
  questions: readonly FastChatQuestion[],
  options: AnswerOptions & { data: string; concurrency?: number | undefined },
  paths: EvalPaths,
  run: EvalRunOptions,
): Promise<{ result: EvalResult<GeneratedAnswer>; note: string }> {
  const result = await generateAnswers({
    ...run,
    model,
    questions,
    data: [options.data],
    promptTemplate: await promptTemplateFor(options),
    sampling: { temperature: options.temperature, maxTokens: options.maxTokens },
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
    ...(options.adapter ? { adapter: options.adapter } : {}),
    ...(options.modelId ? { modelId: options.modelId } : {}),
    ...(options.shots ? { examples: answerExamples.slice(0, options.shots) } : {}),
    ...(options.categoryTemperatures
      ? { categoryTemperatures: parseCategoryTemperatures(options.categoryTemperatures) }
      : {}),
  });
  const answersOut = options.answersOut ?? paths.beside("answers");
  await writeJsonLines(answersOut, result.items);
  const skipped = result.skipped?.length ? ` (${result.skipped.length} questions skipped: see ${paths.out})` : "";
  return { result, note: `wrote ${result.items.length} answers to ${answersOut}${skipped}` };
}

export const generateAnswersEval = defineEval({
  name: "generate-answers",
  description: "answers of --model to a FastChat question.jsonl, written to --answers-out",
  options: z.object({ ...modelOptions, ...dataOption, ...answerOptions, ...outputOptions }),
  async load(options) {
    const paths = await evalPaths(options, "generate-answers");
    return { questions: await loadFastChatQuestions(options.data), paths };
  },
  run: ({ questions, paths }, options, context) =>
    withModels(context, async (open) => {
      const model = await open(options.model, options.adapter);
      return runItemEval(paths, async (store) => {
        const { result, note } = await generateAnswersInto(model, questions, options, paths, {
          store,
          onProgress: context.onProgress,
          signal: context.signal,
        });
        return { result, notes: [note] };
      });
    }),
});
