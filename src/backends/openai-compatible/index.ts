export { parseRetryAfter, type RetryEvent } from "./http-client.js";
export {
  createOpenAICompatibleBackend,
  type OpenAICompatibleBackend,
  type OpenAICompatibleBackendOptions,
} from "./openai-compatible-backend.js";
