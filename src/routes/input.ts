/**
 * `POST /v1/sessions/:sid/executions/:eid/input` (PROTOCOL.md 12): validation at the edge,
 * {@link acceptInput}, and its refusals as HTTP errors.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { readBody, readIdempotencyKey } from "../http.ts";
import { acceptInput } from "../lifecycle.ts";
import { ErrorCode, EXECUTION_ID_RE, type InputAccepted, InputRequest } from "../protocol.ts";
import { requireSession } from "./auth.ts";
import { refusalError } from "./refusals.ts";

/**
 * The input route (PROTOCOL.md section 12), mounted at `/v1/sessions`.
 *
 * @example
 * ```ts
 * app.route("/v1/sessions", inputRoutes());
 * ```
 */
export function inputRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/:sid/executions/:eid/input", requireSession("client"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    const eid = c.req.param("eid");
    const idempotencyKey = readIdempotencyKey(c);
    const body = await readBody(c, InputRequest);
    if (!EXECUTION_ID_RE.test(eid)) throw refusalError({ code: ErrorCode.executionNotFound });
    const accepted = await acceptInput(rt.ctx, sid, eid, body, idempotencyKey);
    if (!accepted.ok) throw refusalError(accepted.refusal);
    rt.log.info("input accepted", {
      sessionId: sid,
      executionId: eid,
      event: "input_accepted",
      inputId: accepted.value.inputId,
    });
    return c.json<InputAccepted>(accepted.value, 202);
  });

  return app;
}
