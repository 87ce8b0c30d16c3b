/**
 * Answers of the model under test (base model, or base + adapter) to a FastChat question set, in the model's chat
 * format (method-spec A.7: turns joined with "### User" / "### {Assistant}", stop at the next user turn). Turn k is
 * generated for all questions at once, with the model's own earlier answers in the prompt.
 */
import { completeAll, type LanguageModel, type SamplingOptions } from "../../backends/language-model.js";
import { throwIfAborted } from "../../errors/index.js";
import { recordId } from "../../run-store/record-id.js";
import type { FastChatAnswer, FastChatQuestion } from "../data/fastchat.js";
import { type EvalResult, type EvalRunOptions, evalResultHead } from "../eval-result.js";
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

/** A FastChat answer record plus the exact prompts used for each turn. */
export type GeneratedAnswer = FastChatAnswer & {
  answer_id: string;
  /** The sampling temperature used for this question. */
  temperature: number;
  prompts: string[];
  finishReasons: string[];
};

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
  const { model, questions, onProgress, signal } = options;
  const task = "generate-answers";
  const template = options.promptTemplate ?? plainPromptTemplate;
  const sampling = { ...defaultAnswerSampling, ...options.sampling };
  const examples = options.examples ?? [];
  // Each question's sampling: its category's temperature where one is given.
  const samplingOf = questions.map((question) => {
    const temperature = question.category ? options.categoryTemperatures?.[question.category] : undefined;
    return temperature === undefined ? sampling : { ...sampling, temperature };
  });
  const modelId = options.modelId ?? model.id;
  const answers = questions.map(() => ({
    turns: [] as string[],
    prompts: [] as string[],
    finishReasons: [] as string[],
  }));
  const maxTurns = Math.max(...questions.map((question) => question.turns.length));
  onProgress?.({ type: "stage-start", stage: task, total: questions.length });
  for (let turn = 0; turn < maxTurns; turn++) {
    throwIfAborted(signal);
    const pending = questions.flatMap((question, index) => (question.turns.length > turn ? [index] : []));
    const requests = pending.map((index) => {
      const question = questions[index]!;
      const history: ChatTurn[] = question.turns.slice(0, turn + 1).map((user, k) => ({
        user,
        ...(k < turn ? { assistant: answers[index]!.turns[k]! } : {}),
      }));
      const prompt = renderChatPrompt(template, history, examples);
      answers[index]!.prompts.push(prompt);
      const own = samplingOf[index]!;
      return { ...own, prompt, stop: [...template.stop, ...(own.stop ?? [])] };
    });
    const results = await completeAll(model, requests, { signal });
    results.forEach((result, position) => {
      const answer = answers[pending[position]!]!;
      const completion = result.completions[0]!;
      answer.turns.push(cleanAnswer(completion.text, template));
      answer.finishReasons.push(completion.finishReason);
    });
  }
  const tstamp = Date.now() / 1000;
  const items: GeneratedAnswer[] = questions.map((question, index) => ({
    question_id: question.question_id,
    answer_id: recordId(task, modelId, question.question_id, answers[index]!.prompts, samplingOf[index]),
    model_id: modelId,
    temperature: samplingOf[index]!.temperature ?? 1,
    choices: [{ index: 0, turns: answers[index]!.turns }],
    tstamp,
    prompts: answers[index]!.prompts,
    finishReasons: answers[index]!.finishReasons,
  }));
  onProgress?.({ type: "stage-end", stage: task, done: items.length });
  const allTurns = items.flatMap((item) => item.choices[0]!.turns);
  const reasons = items.flatMap((item) => item.finishReasons);
  return {
    ...evalResultHead(task, options, model.id),
    settings: {
      modelId,
      promptTemplate: template,
      sampling,
      ...(options.categoryTemperatures ? { categoryTemperatures: options.categoryTemperatures } : {}),
      shots: examples.length,
    },
    aggregate: {
      n: items.length,
      turns: allTurns.length,
      meanAnswerChars: allTurns.reduce((sum, text) => sum + text.length, 0) / Math.max(1, allTurns.length),
      emptyAnswers: allTurns.filter((text) => text === "").length,
      stoppedAtLength: reasons.filter((reason) => reason === "length").length,
    },
    items,
    warnings: [],
  };
}
