export { parseRetryAfter, type RetryEvent } from "./http-client.js";
export {
  createOpenAICompatibleBackend,
  type OpenAICompatibleBackend,
  type OpenAICompatibleBackendOptions,
} from "./openai-compatible-backend.js";
export type { ServedModel } from "./response-shapes.js";
export { grammarFields, type ServerInfo, type ServerKind, serverKinds } from "./server-info.js";
