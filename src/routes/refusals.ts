/**
 * Domain refusals as HTTP errors: the one place that gives each lifecycle refusal its
 * status and message (PROTOCOL.md 4). Lifecycle code never names an HTTP status.
 *
 * @module
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { HttpError } from "../http.ts";
import type { Refusal } from "../lifecycle.ts";
import { ErrorCode } from "../protocol.ts";

/** The refusal codes of REST transitions, with their status and default message. */
const REFUSALS = {
  [ErrorCode.sessionExists]: { status: 409, message: "session already exists" },
  [ErrorCode.sessionNotFound]: { status: 404, message: "session not found" },
  [ErrorCode.executionNotFound]: { status: 404, message: "execution not found" },
  [ErrorCode.executionInProgress]: { status: 409, message: "another execution is active" },
  [ErrorCode.queueFull]: { status: 429, message: "too many executions are waiting" },
  [ErrorCode.idempotencyKeyReused]: {
    status: 422,
    message: "Idempotency-Key was used with a different body",
  },
} as const satisfies Record<string, { status: ContentfulStatusCode; message: string }>;

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
 * err.status; // 429
 * ```
 */
export function refusalError(refusal: Refusal<RestRefusalCode>, message?: string): HttpError {
  const { code, ...details } = refusal;
  const known = REFUSALS[code];
  return new HttpError(known.status, code, message ?? known.message, details);
}
