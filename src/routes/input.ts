/**
 * `POST /v1/sessions/:sid/executions/:eid/input` (PROTOCOL.md 12): validation at the edge,
 * {@link acceptInput}, and its refusals as HTTP errors.
 *
 * @module
 */
import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "../context.ts";
import { HttpError, readBody, validate } from "../http.ts";
import { acceptInput, type AcceptInputResult } from "../lifecycle.ts";
import { EXECUTION_ID_RE, IdempotencyKey, InputRequest } from "../protocol.ts";
import { requireSession } from "./auth.ts";

type Refusal = Extract<AcceptInputResult, { ok: false }>;

/** Status and message of each refusal. */
const REFUSALS: Record<Refusal["reason"], [ContentfulStatusCode, string]> = {
  SESSION_NOT_FOUND: [404, "session not found"],
  EXECUTION_NOT_FOUND: [404, "execution not found"],
  EXECUTION_ENDED: [409, "the execution has ended"],
  INPUT_CLOSED: [409, "the execution's input was closed with endOfInput"],
  INPUT_QUEUE_FULL: [429, "too many inputs are waiting to be delivered"],
  IDEMPOTENCY_KEY_REUSED: [422, "Idempotency-Key was used with a different body"],
};

/** The input route, mounted at `/v1/sessions`. */
export function inputRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/:sid/executions/:eid/input", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const eid = c.req.param("eid");
    const keyHeader = c.req.header("idempotency-key");
    const idempotencyKey = keyHeader === undefined
      ? undefined
      : validate(IdempotencyKey, keyHeader, "Idempotency-Key header");
    const body = await readBody(c, InputRequest);
    if (!EXECUTION_ID_RE.test(eid)) throw refusal({ ok: false, reason: "EXECUTION_NOT_FOUND" });
    const { result, effects } = await acceptInput(rt.ctx, sid, eid, body, idempotencyKey);
    if (!result.ok) throw refusal(result);
    rt.committed(effects);
    if (effects.stored.length > 0) {
      rt.log.info("input accepted", {
        sessionId: sid,
        executionId: eid,
        event: "input_accepted",
        inputId: result.body.inputId,
      });
    }
    return c.json(result.body, 202);
  });

  return app;
}

function refusal(result: Refusal): HttpError {
  const [status, message] = REFUSALS[result.reason];
  const details = result.reason === "EXECUTION_ENDED" ? { status: result.status } : {};
  return new HttpError(status, result.reason, message, details);
}
