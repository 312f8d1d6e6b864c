/**
 * The ingest upgrade (PROTOCOL.md 5): 426 for a plain request; otherwise the upgrade is
 * accepted and admission decides, closing with 4401/4403/4000/4009/4001 or serving the
 * connection.
 *
 * @module
 */
import { MetricName } from "../metrics.ts";
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { HttpError, upgradeWebSocket } from "../http.ts";
import { ulid } from "../ids.ts";
import { EarlyFrames, inAdmissionTurn, IngestConnection } from "../ingest.ts";
import { KnownEntries } from "../store/mod.ts";
import { type AdmissionRefusal, admitConnection } from "../lifecycle.ts";
import { CloseCode, ErrorCode, executionDoneReason, parseDialHeader } from "../protocol.ts";
import { bearer, originAllowed } from "./auth.ts";

/** The close code and reason of each admission refusal (PROTOCOL.md 5, 5.3). */
function admissionClose(refusal: AdmissionRefusal): { code: CloseCode; reason: string } {
  switch (refusal.code) {
    case "unauthorized":
      return { code: CloseCode.unauthorized, reason: "unauthorized" };
    case "forbidden":
      return { code: CloseCode.forbidden, reason: "forbidden" };
    case "executionDone":
      return { code: CloseCode.executionDone, reason: executionDoneReason(refusal.status) };
    case "notActiveYet":
      return { code: CloseCode.notActiveYet, reason: "not active yet" };
    case "replaced":
      return { code: CloseCode.replaced, reason: "replaced" };
  }
}

/**
 * The ingest route (PROTOCOL.md section 5), mounted at `/v1/sessions`. Past the upgrade (426
 * without one), admission runs once the socket is open, so each refusal is a close code the
 * wrapper can read.
 *
 * @example
 * ```ts
 * app.route("/v1/sessions", ingestRoutes());
 * ```
 */
export function ingestRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/:sid/executions/:eid/ingest", (c) => {
    const rt = c.get("runtime");
    if ((c.req.header("upgrade") ?? "").toLowerCase() !== "websocket") {
      throw new HttpError(ErrorCode.upgradeRequired, "this route takes a WebSocket upgrade");
    }
    const path = { sessionId: c.req.param("sid"), executionId: c.req.param("eid") };
    const token = bearer(c.req.header("authorization"));
    const dial = parseDialHeader(c.req.header("x-tether-dial"));
    const allowed = originAllowed(rt, c.req.raw);
    const { socket, response } = upgradeWebSocket(c.req.raw, {
      idleTimeout: 0,
    });
    const early = new EarlyFrames(socket, rt.config.maxPendingBytes);
    socket.onopen = async () => {
      if (!allowed) return socket.close(CloseCode.forbidden, "origin not allowed");
      const connectionId = `con_${ulid()}`;
      const known = new KnownEntries();
      try {
        const outcome = await inAdmissionTurn(
          rt,
          socket,
          () => admitConnection(rt.ctx, path, token, connectionId, dial, known),
        );
        if (!outcome) return; // the wrapper gave up on this dial while it waited
        if (!outcome.ok) {
          const { code, reason } = admissionClose(outcome.refusal);
          if (socket.readyState === WebSocket.OPEN) socket.close(code, reason);
          return;
        }
        const admission = outcome.value;
        if (admission.graceCancelled) rt.metrics.inc(MetricName.graceCancelled);
        const connection = new IngestConnection(rt, socket, {
          ...admission,
          connectionId,
          known,
        });
        connection.start(early);
        rt.log.info("wrapper connected", {
          sessionId: admission.sessionId,
          executionId: admission.executionId,
          event: "ingest_admitted",
          lastSeq: admission.lastSeq,
        });
      } catch (err) {
        rt.log.error("admission failed", { err: String(err) });
        if (socket.readyState === WebSocket.OPEN) {
          socket.close(CloseCode.internalError, "internal error");
        }
      }
    };
    return response;
  });
  return app;
}
