/**
 * Assertions for REST tests: the error body of PROTOCOL.md 1, and a snapshot of everything a
 * client can read about a session, to prove that a rejected request changed nothing.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { TestServer } from "./server.ts";

/**
 * Asserts `{status, body}` is the documented error: status, `error` code and a message.
 *
 * @example
 * ```ts
 * const res = await server.call("/v1/sessions/nope/executions", { method: "POST", json: {} });
 * assertError(res, 404, "SESSION_NOT_FOUND");
 * ```
 */
export function assertError(
  res: { status: number; body: unknown },
  status: number,
  code: string,
): void {
  const body = res.body as { error?: unknown; message?: unknown } | undefined;
  assert.equal(res.status, status, `expected ${status} ${code}, got ${JSON.stringify(res)}`);
  assert.equal(body?.error, code, JSON.stringify(body));
  assert.equal(typeof body?.message, "string", JSON.stringify(body));
}

/**
 * Asserts a `400 INVALID_REQUEST` with an `issues` array.
 *
 * @example
 * ```ts
 * assertInvalid(await server.call("/v1/sessions/s1/executions?after=junk"));
 * ```
 */
export function assertInvalid(res: { status: number; body: unknown }): void {
  assertError(res, 400, "INVALID_REQUEST");
  assert.ok(Array.isArray((res.body as { issues?: unknown }).issues), JSON.stringify(res.body));
}

/** Everything the API shows about a session: its record, events and executions. */
export interface SessionSnapshot {
  /** `GET /v1/sessions/:sid`'s body. */
  session: unknown;
  /** Every stored event. */
  events: unknown;
  /** Every execution (health left out: it moves with time). */
  executions: unknown;
}

/**
 * Reads a session's record, all its events and all its executions (health excluded).
 *
 * @example
 * ```ts
 * const before = await snapshot(server, "s1");
 * const res = await server.call("/v1/sessions/s1", { method: "PATCH" });
 * assertError(res, 405, "METHOD_NOT_ALLOWED");
 * assert.deepEqual(await snapshot(server, "s1"), before);
 * ```
 */
export async function snapshot(server: TestServer, sessionId: string): Promise<SessionSnapshot> {
  const base = `/v1/sessions/${encodeURIComponent(sessionId)}`;
  const [session, events, executions] = await Promise.all([
    server.call(base),
    server.call(`${base}/events?limit=1000`),
    server.call<{ executions?: Record<string, unknown>[] }>(`${base}/executions?limit=1000`),
  ]);
  // `health` depends on the clock, not on stored state.
  const stable = executions.body?.executions?.map(({ health: _, ...rest }) => rest);
  return {
    session,
    events,
    executions: { status: executions.status, executions: stable },
  };
}
