/**
 * Client routes for sessions, executions and tickets (PROTOCOL.md 4).
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { HttpError, readBody, readIdempotencyKey, validate } from "../http.ts";
import {
  createExecution,
  createSession,
  deleteSession,
  executionView,
  executionViews,
  failExecution,
  interruptExecution,
  sessionView,
} from "../lifecycle.ts";
import {
  CreateExecutionBody,
  CreateSessionBody,
  ErrorCode,
  EXECUTION_ID_RE,
  type ExecutionCreated,
  type ExecutionList,
  type ExecutionView,
  FailBody,
  type FailResult,
  type InterruptAccepted,
  InterruptBody,
  ListExecutionsQuery,
  type SessionCreated,
  type SessionView,
  TicketBody,
  type TicketCreated,
} from "../protocol.ts";
import { listExecutionIds } from "../store/mod.ts";
import { callbackUrlProblem } from "../callback_url.ts";
import { requireClient, requireSession } from "./auth.ts";
import { refusalError } from "./refusals.ts";

const executionNotFound = () => refusalError({ code: ErrorCode.executionNotFound });

/**
 * The session, execution and ticket routes (PROTOCOL.md sections 2 and 4), mounted at
 * `/v1/sessions`.
 *
 * @example
 * ```ts
 * app.route("/v1/sessions", sessionRoutes());
 * ```
 */
export function sessionRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  addSessionRoutes(app);
  addExecutionRoutes(app);
  addControlRoutes(app);
  return app;
}

/** `POST /`, `GET /:sid`, `DELETE /:sid`. */
function addSessionRoutes(app: Hono<AppEnv>): void {
  app.post("/", requireClient, async (c) => {
    const body = await readBody(c, CreateSessionBody);
    const rt = c.get("runtime");
    const created = await createSession(rt.ctx, body);
    if (!created.ok) {
      throw refusalError(created.refusal, `session ${body.sessionId} already exists`);
    }
    const { sessionId, createdAt, metadata } = created.value;
    rt.log.info("session created", { sessionId, event: "session_created" });
    return c.json<SessionCreated>({ sessionId, createdAt, metadata }, 201);
  });

  app.get("/:sid", requireSession("read"), async (c) => {
    const view = await sessionView(c.get("runtime").ctx, c.req.param("sid"));
    if (!view) throw refusalError({ code: ErrorCode.sessionNotFound });
    return c.json<SessionView>(view);
  });

  app.delete("/:sid", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const deleted = await deleteSession(rt.ctx, sid);
    if (!deleted.ok) throw refusalError(deleted.refusal);
    rt.log.info("session deleted", { sessionId: sid, event: "session_deleted" });
    return c.body(null, 204);
  });
}

/**
 * Longest `Host` the execution URLs may be built from: a host name (DNS allows 253 characters)
 * and `:port`. The URLs are stored with an idempotent creation (one KV value), so a longer one
 * is refused instead.
 */
const MAX_HOST_CHARS = 253 + ":65535".length;

/** `POST /:sid/executions`, `GET /:sid/executions`, `GET /:sid/executions/:eid`. */
function addExecutionRoutes(app: Hono<AppEnv>): void {
  app.post("/:sid/executions", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const idempotencyKey = readIdempotencyKey(c);
    const body = await readBody(c, CreateExecutionBody);
    refuseCallbackUrl(body.callbackUrl, rt.config.callbackPrivate);
    if (!rt.config.publicUrl && new URL(c.req.url).host.length > MAX_HOST_CHARS) {
      throw new HttpError(ErrorCode.invalidRequest, "Host header is longer than a host name");
    }
    const base = rt.publicBase(c.req.url);
    // A live session's id matches SESSION_ID_RE, whose characters are all valid in a path
    // segment: the URLs spell it as it is (PROTOCOL.md 4), ':' included.
    const creation = await createExecution(rt.ctx, sid, body, {
      ingestUrl: (eid) => `${base}/v1/sessions/${sid}/executions/${eid}/ingest`,
      streamUrl: `${base}/v1/sessions/${sid}/stream`,
    }, idempotencyKey);
    if (!creation.ok) throw refusalError(creation.refusal);
    const { body: created, created: isNew } = creation.value;
    if (isNew) {
      rt.log.info("execution created", {
        sessionId: sid,
        executionId: created.executionId,
        event: "execution_created",
      });
    }
    return c.json<ExecutionCreated>(created, 201);
  });

  app.get("/:sid/executions", requireSession("read"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const query = validate(ListExecutionsQuery, c.req.query(), "query");
    const { after } = query;
    // An `after` that cannot be an id is unknown too, and is not looked up (KV keys are bounded).
    if (
      after !== undefined &&
      !(EXECUTION_ID_RE.test(after) && await executionView(rt.ctx, sid, after))
    ) {
      throw new HttpError(ErrorCode.invalidRequest, "after names no execution of this session", {
        issues: [{ path: ["after"], message: "unknown executionId" }],
      });
    }
    const ids = await listExecutionIds(rt.kv, sid, { after: query.after, limit: query.limit });
    return c.json<ExecutionList>({ executions: await executionViews(rt.ctx, sid, ids) });
  });

  app.get("/:sid/executions/:eid", requireSession("read"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const eid = c.req.param("eid");
    const view = EXECUTION_ID_RE.test(eid) ? await executionView(rt.ctx, sid, eid) : null;
    if (!view) throw executionNotFound();
    return c.json<ExecutionView>(view);
  });
}

/** `POST /:sid/executions/:eid/interrupt`, `POST /:sid/executions/:eid/fail`, `POST /:sid/tickets`. */
function addControlRoutes(app: Hono<AppEnv>): void {
  app.post("/:sid/executions/:eid/interrupt", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const eid = c.req.param("eid");
    const body = await readBody(c, InterruptBody);
    if (!EXECUTION_ID_RE.test(eid)) throw executionNotFound();
    const interrupted = await interruptExecution(rt.ctx, sid, eid, body.reason);
    if (!interrupted.ok) throw refusalError(interrupted.refusal);
    rt.log.info("interrupt requested", {
      sessionId: sid,
      executionId: eid,
      event: "interrupt_requested",
    });
    return c.json<InterruptAccepted>({ executionId: eid, status: interrupted.value.status }, 202);
  });

  app.post("/:sid/executions/:eid/fail", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const eid = c.req.param("eid");
    const body = await readBody(c, FailBody);
    if (!EXECUTION_ID_RE.test(eid)) throw executionNotFound();
    const failed = await failExecution(rt.ctx, sid, eid, body);
    if (!failed.ok) throw refusalError(failed.refusal);
    return c.json<FailResult>(failed.value);
  });

  app.post("/:sid/tickets", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const body = await readBody(c, TicketBody);
    const session = c.get("session");
    const expiresAt = rt.ctx.now() + (body.ttlMs ?? rt.config.ticketTtlMs);
    const ticket = await rt.credentials.issueTicket({
      sessionId: sid,
      incarnation: session.incarnation,
      expiresAt,
    });
    return c.json<TicketCreated>({ ticket, expiresAt: new Date(expiresAt).toISOString() }, 201);
  });
}

/** 400 `INVALID_REQUEST` for a callback URL with credentials or a private host (PROTOCOL.md 4). */
function refuseCallbackUrl(url: string | undefined, allowPrivate: boolean): void {
  const problem = url === undefined ? undefined : callbackUrlProblem(url, allowPrivate);
  if (problem === undefined) return;
  throw new HttpError(ErrorCode.invalidRequest, problem, {
    issues: [{ path: ["callbackUrl"], message: problem, code: "custom" }],
  });
}
