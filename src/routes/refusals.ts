/**
 * Domain refusals as HTTP errors: the one place that gives each lifecycle refusal its
 * message; its status follows from its code (`HTTP_STATUS`). Lifecycle code never names an
 * HTTP status.
 *
 * @module
 */
import { HttpError } from "../http.ts";
import type { Refusal } from "../lifecycle.ts";
import { ErrorCode } from "../protocol.ts";

/** The refusal codes of REST transitions, with their default message. */
const REFUSALS = {
  [ErrorCode.sessionExists]: "session already exists",
  [ErrorCode.sessionNotFound]: "session not found",
  [ErrorCode.executionNotFound]: "execution not found",
  [ErrorCode.executionInProgress]: "another execution is active",
  [ErrorCode.queueFull]: "too many executions are waiting",
  [ErrorCode.idempotencyKeyReused]: "Idempotency-Key was used with a different body",
  [ErrorCode.executionEnded]: "the execution has ended",
  [ErrorCode.inputClosed]: "the execution's input was closed with endOfInput",
  [ErrorCode.inputQueueFull]: "too many inputs are waiting to be delivered",
} as const;

/** A refusal code a REST route can meet. */
export type RestRefusalCode = keyof typeof REFUSALS;

/**
 * The {@link HttpError} of a refusal: its status, its code, `message` (or the code's default
 * text) and the refusal's other fields as details.
 *
 * @example
 * ```ts
 * import { ErrorCode } from "../protocol.ts";
 * const err = refusalError({ code: ErrorCode.queueFull });
 * err.status; // 429 (HTTP_STATUS)
 * ```
 */
export function refusalError(refusal: Refusal<RestRefusalCode>, message?: string): HttpError {
  const { code, ...details } = refusal;
  return new HttpError(code, message ?? REFUSALS[code], details);
}
