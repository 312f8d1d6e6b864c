/**
 * Client routes for sessions, executions and tickets (PROTOCOL.md 4).
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { HttpError, readBody, validate } from "../http.ts";
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
  EXECUTION_ID_RE,
  type ExecutionCreated,
  type ExecutionList,
  type ExecutionView,
  FailBody,
  type FailResult,
  IdempotencyKey,
  type InterruptAccepted,
  InterruptBody,
  ListExecutionsQuery,
  type SessionCreated,
  type SessionView,
  TicketBody,
  type TicketCreated,
} from "../protocol.ts";
import { listExecutionIds } from "../store/mod.ts";
import { requireClient, requireSession } from "./auth.ts";

const notFound = () => new HttpError(404, "SESSION_NOT_FOUND", "session not found");
const executionNotFound = () => new HttpError(404, "EXECUTION_NOT_FOUND", "execution not found");

/** The session and execution routes, mounted at `/v1/sessions`. */
export function sessionRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/", requireClient, async (c) => {
    const body = await readBody(c, CreateSessionBody);
    const rt = c.get("runtime");
    const result = await createSession(rt.ctx, body);
    if (!result.ok) {
      throw new HttpError(409, "SESSION_EXISTS", `session ${body.sessionId} already exists`);
    }
    const { sessionId, createdAt, metadata } = result.session;
    rt.log.info("session created", { sessionId, event: "session_created" });
    return c.json<SessionCreated>({ sessionId, createdAt, metadata }, 201);
  });

  app.get("/:sid", requireSession("read"), async (c) => {
    const view = await sessionView(c.get("runtime").ctx, c.req.param("sid"));
    if (!view) throw notFound();
    return c.json<SessionView>(view);
  });

  app.delete("/:sid", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const { deleted, effects } = await deleteSession(rt.ctx, sid);
    if (!deleted) throw notFound();
    rt.committed(effects);
    rt.log.info("session deleted", { sessionId: sid, event: "session_deleted" });
    return c.body(null, 204);
  });

  app.post("/:sid/executions", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const keyHeader = c.req.header("idempotency-key");
    const idempotencyKey = keyHeader === undefined
      ? undefined
      : validate(IdempotencyKey, keyHeader, "Idempotency-Key header");
    const body = await readBody(c, CreateExecutionBody);
    const base = rt.publicBase(c.req.url);
    // A live session's id matches SESSION_ID_RE, whose characters are all valid in a path
    // segment: the URLs spell it as it is (PROTOCOL.md 4), ':' included.
    const { result, effects } = await createExecution(rt.ctx, sid, body, {
      ingestUrl: (eid) => `${base}/v1/sessions/${sid}/executions/${eid}/ingest`,
      streamUrl: `${base}/v1/sessions/${sid}/stream`,
    }, idempotencyKey);
    if (!result.ok) {
      const { status, error, ...details } = result;
      delete (details as { ok?: boolean }).ok;
      throw new HttpError(status, error, creationMessages[error], details);
    }
    rt.committed(effects);
    if (effects.stored.length > 0) {
      rt.log.info("execution created", {
        sessionId: sid,
        executionId: result.body.executionId,
        event: "execution_created",
      });
    }
    return c.json<ExecutionCreated>(result.body, 201);
  });

  app.get("/:sid/executions", requireSession("read"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const query = validate(ListExecutionsQuery, c.req.query(), "query");
    if (query.after !== undefined && !(await executionView(rt.ctx, sid, query.after))) {
      throw new HttpError(400, "INVALID_REQUEST", "after names no execution of this session", {
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

  app.post("/:sid/executions/:eid/interrupt", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const eid = c.req.param("eid");
    const body = await readBody(c, InterruptBody);
    const result = EXECUTION_ID_RE.test(eid)
      ? await interruptExecution(rt.ctx, sid, eid, body.reason)
      : null;
    if (!result) throw executionNotFound();
    rt.committed(result.effects);
    rt.log.info("interrupt requested", {
      sessionId: sid,
      executionId: eid,
      event: "interrupt_requested",
    });
    return c.json<InterruptAccepted>({ executionId: eid, status: result.status }, 202);
  });

  app.post("/:sid/executions/:eid/fail", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const eid = c.req.param("eid");
    const body = await readBody(c, FailBody);
    if (!EXECUTION_ID_RE.test(eid) || !(await executionView(rt.ctx, sid, eid))) {
      throw executionNotFound();
    }
    const { failed, effects } = await failExecution(rt.ctx, eid, body);
    if (effects) rt.committed(effects);
    return c.json<FailResult>({ failed });
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

  return app;
}

const creationMessages: Record<string, string> = {
  SESSION_NOT_FOUND: "session not found",
  EXECUTION_IN_PROGRESS: "another execution is active",
  QUEUE_FULL: "too many executions are waiting",
  IDEMPOTENCY_KEY_REUSED: "Idempotency-Key was used with a different body",
};
