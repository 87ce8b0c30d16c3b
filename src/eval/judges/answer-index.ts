import { ConfigError } from "../../errors/index.js";
import type { FastChatAnswer } from "../data/fastchat.js";

/**
 * Answers of one model by question id. An answer file may hold several models; `modelId` picks one (required
 * then). Throws naming the file when the model is absent.
 */
export function indexAnswers(
  answers: readonly FastChatAnswer[],
  options: { modelId?: string; path?: string } = {},
): { modelId: string; byQuestion: Map<string, FastChatAnswer> } {
  const models = [...new Set(answers.map((answer) => answer.model_id))];
  const modelId = options.modelId ?? (models.length === 1 ? models[0] : undefined);
  if (modelId === undefined || !models.includes(modelId)) {
    throw new ConfigError(
      modelId === undefined
        ? `holds answers of several models (${models.join(", ")}); choose one by its model_id`
        : `holds no answers of model "${modelId}" (found: ${models.join(", ")})`,
      { path: options.path, field: "model_id" },
    );
  }
  const byQuestion = new Map<string, FastChatAnswer>();
  for (const answer of answers) if (answer.model_id === modelId) byQuestion.set(String(answer.question_id), answer);
  return { modelId, byQuestion };
}
