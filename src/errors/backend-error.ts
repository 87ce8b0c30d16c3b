import { SelfalignError } from "./selfalign-error.js";

/** A language-model backend failed (request error, unreachable server, model that cannot be loaded). */
export class BackendError extends SelfalignError {}

/** The backend cannot do what was asked (e.g. `score` on a chat-only server). Never retryable. */
export class CapabilityError extends SelfalignError {}
