// @ts-check
/**
 * The protocol words the viewer page and its renderers use (PROTOCOL.md), in one place. A
 * plain ES module with no imports, so the browser (no build step) and Deno code load the same
 * file; `static/protocol_test.ts` keeps it in step with `src/protocol.ts`.
 *
 * @example
 * ```js
 * import { CloseCode, EventType } from "./protocol.js";
 * if (event.code === CloseCode.notFound) showDeleted();
 * if (envelope.streamEventType === EventType.input) showInput(envelope);
 * ```
 *
 * @module
 */

/** WebSocket close codes a viewer can see (PROTOCOL.md 5.3 and 6). */
export const CloseCode = Object.freeze({
  normal: 1000,
  tryAgainLater: 1013,
  unauthorized: 4401,
  forbidden: 4403,
  notFound: 4404,
});

/** The HTTP status that a viewer close code stands for (WebSockets cannot carry one). */
export const CLOSE_CODE_HTTP_STATUS = Object.freeze({
  [CloseCode.unauthorized]: 401,
  [CloseCode.forbidden]: 403,
  [CloseCode.notFound]: 404,
});

/** Event types the renderers know by name (PROTOCOL.md 5.1, 7, 9, 12 and 14). */
export const EventType = Object.freeze({
  executionStatus: "execution_status",
  wrapperDisconnected: "wrapper_disconnected",
  wrapperResumed: "wrapper_resumed",
  input: "input",
  inputDelivered: "input_delivered",
  agent: "agent",
  kilocode: "kilocode",
  output: "output",
  complete: "complete",
  interrupted: "interrupted",
  error: "error",
  acp: "acp",
  acpTurn: "acp_turn",
  acpInputIgnored: "acp_input_ignored",
  permissionRequest: "permission_request",
});

/** Terminal execution statuses (PROTOCOL.md 3). */
export const TERMINAL_STATUSES = Object.freeze(["completed", "failed", "interrupted"]);

/** `stream` values of an `output` event (PROTOCOL.md 9.1). */
export const OutputStream = Object.freeze({ stdout: "stdout", stderr: "stderr" });

/** Error codes of the REST API the page reacts to (PROTOCOL.md 4 and 12). */
export const ApiErrorCode = Object.freeze({
  executionEnded: "EXECUTION_ENDED",
  inputClosed: "INPUT_CLOSED",
  inputQueueFull: "INPUT_QUEUE_FULL",
});
