import assert from "node:assert/strict";
import { Hono } from "hono";
import { errorResponse, HTTP_STATUS, HttpError, type HttpErrorCode } from "./http.ts";
import { ErrorCode } from "./protocol.ts";

Deno.test("HTTP_STATUS: the status of every HTTP error code of the contract", () => {
  const expected: Record<HttpErrorCode, number> = {
    INVALID_REQUEST: 400,
    UNAUTHORIZED: 401,
    FORBIDDEN: 403,
    SESSION_NOT_FOUND: 404,
    EXECUTION_NOT_FOUND: 404,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    SESSION_EXISTS: 409,
    EXECUTION_IN_PROGRESS: 409,
    EXECUTION_ENDED: 409,
    INPUT_CLOSED: 409,
    PAYLOAD_TOO_LARGE: 413,
    IDEMPOTENCY_KEY_REUSED: 422,
    UPGRADE_REQUIRED: 426,
    QUEUE_FULL: 429,
    INPUT_QUEUE_FULL: 429,
    INTERNAL: 500,
    BUSY: 503,
  };
  assert.deepEqual({ ...HTTP_STATUS }, expected);
  // Frame and agent codes never answer an HTTP request.
  for (const code of [ErrorCode.invalidFrame, ErrorCode.seqGap, ErrorCode.agentExit]) {
    assert.ok(!(code in HTTP_STATUS), code);
  }
});

Deno.test("HttpError takes its status from its code", () => {
  const err = new HttpError(ErrorCode.queueFull, "too many", { limit: 16 });
  assert.equal(err.status, 429);
  assert.equal(err.code, "QUEUE_FULL");
  assert.equal(err.message, "too many");
  assert.deepEqual(err.details, { limit: 16 });
});

Deno.test("errorResponse: the error body of PROTOCOL.md 1 with the code's status", async () => {
  const app = new Hono().get(
    "/",
    (c) => errorResponse(c, ErrorCode.executionInProgress, "busy", { activeExecutionId: "exc_1" }),
  );
  const res = await app.request("/");
  assert.equal(res.status, 409);
  assert.deepEqual(await res.json(), {
    error: "EXECUTION_IN_PROGRESS",
    message: "busy",
    activeExecutionId: "exc_1",
  });
});
