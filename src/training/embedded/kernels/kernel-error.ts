import { SelfalignError } from "../../../errors/selfalign-error.js";

/** A matmul kernel cannot be created (not built, failed to load) or was called with inconsistent arguments. */
export class KernelError extends SelfalignError {}
