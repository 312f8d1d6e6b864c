/**
 * Viewer routes (PROTOCOL.md 6): `GET …/events` as a JSON page or, with
 * `Accept: text/event-stream`, as Server-Sent Events; `GET …/stream` as a WebSocket.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { HttpError, queryTooDeep, upgradeWebSocket, validate } from "../http.ts";
import { CloseCode, ErrorCode, EventsQuery, StreamQuery } from "../protocol.ts";
import { bodyChunks, type BodyPiece, leasedBodyStream } from "../read_budget.ts";
import type { Runtime } from "../runtime.ts";
import {
  type EventsPageOptions,
  eventsPagePieces,
  PAGE_BYTES,
  readEventsPage,
  runViewer,
  type ViewerFilter,
} from "../stream.ts";
import { jsonSize } from "../store/mod.ts";
import { authorize, type DenialCode, requireSession } from "./auth.ts";

/** The close code of a refused viewer upgrade (PROTOCOL.md 2, 6). */
const DENIAL_CLOSE: Readonly<Record<DenialCode, CloseCode>> = {
  [ErrorCode.unauthorized]: CloseCode.unauthorized,
  [ErrorCode.forbidden]: CloseCode.forbidden,
  [ErrorCode.sessionNotFound]: CloseCode.notFound,
};

/** The filters of a query; an empty list (`eventTypes=`) filters nothing, like an absent one. */
function filterOf(query: StreamQuery): ViewerFilter {
  const setOf = (list?: string[]) => list?.length ? new Set(list) : undefined;
  return { executionIds: setOf(query.executionIds), eventTypes: setOf(query.eventTypes) };
}

const LAST_EVENT_ID = /^\d{1,15}$/;
const JSON_TYPE = "application/json";
const SSE_TYPE = "text/event-stream";

/**
 * A JSON events page. Its read is taken from the instance's read budget, and the body is
 * written as the client reads it, giving the memory back as it goes.
 */
async function jsonPage(
  rt: Runtime,
  sid: string,
  options: EventsPageOptions,
): Promise<Response> {
  const lease = rt.readBudget.open();
  try {
    if (!(await lease.reserve(PAGE_BYTES, rt.shutdown))) {
      throw new HttpError(ErrorCode.busy, "the instance is shutting down");
    }
    const page = await readEventsPage(rt, sid, options);
    lease.hold(jsonSize(page.events));
    const body = leasedBodyStream(lease, eventsPagePieces(page));
    return new Response(body, { headers: { "content-type": JSON_TYPE } });
  } catch (err) {
    lease[Symbol.dispose]();
    throw err;
  }
}

/**
 * The viewer routes (PROTOCOL.md section 6), mounted at `/v1/sessions`. The WebSocket route
 * authorizes before the upgrade and closes a refused socket with 4401, 4403 or 4404.
 *
 * @example
 * ```ts
 * app.route("/v1/sessions", streamRoutes());
 * ```
 */
export function streamRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/:sid/events", requireSession("read"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    // Hono answers HEAD with this handler and drops the body unread: read nothing for it.
    const head = (type: string) => new Response(null, { headers: { "content-type": type } });
    if (!(c.req.header("accept") ?? "").includes("text/event-stream")) {
      const query = validate(EventsQuery, c.req.query(), "query");
      if (c.req.method === "HEAD") return head(JSON_TYPE);
      const after = query.after ?? query.fromId ?? 0;
      return await jsonPage(rt, sid, { after, limit: query.limit, filter: filterOf(query) });
    }
    const query = validate(StreamQuery, c.req.query(), "query");
    if (c.req.method === "HEAD") return head(SSE_TYPE);
    // An empty id is no id (the SSE standard's reading): the query decides.
    const lastEventId = c.req.header("last-event-id")?.trim() || undefined;
    if (lastEventId !== undefined && !LAST_EVENT_ID.test(lastEventId)) {
      throw new HttpError(ErrorCode.invalidRequest, "invalid Last-Event-ID", { issues: [] });
    }
    const after = lastEventId !== undefined
      ? Number(lastEventId)
      : query.after ?? query.fromId ?? 0;
    return sseResponse(rt, sid, after, filterOf(query));
  });

  app.get("/:sid/stream", async (c) => {
    const rt = c.get("runtime");
    if ((c.req.header("upgrade") ?? "").toLowerCase() !== "websocket") {
      throw new HttpError(ErrorCode.upgradeRequired, "this route takes a WebSocket upgrade");
    }
    const sid = c.req.param("sid");
    const decision = await authorize(rt, c.req.raw, sid, "read");
    const query = queryTooDeep(c) ? undefined : StreamQuery.safeParse(c.req.query());
    const { socket, response } = upgradeWebSocket(c.req.raw);
    socket.onopen = () => {
      if (!decision.ok) {
        socket.close(DENIAL_CLOSE[decision.code], decision.message);
      } else if (!query?.success) {
        socket.close(CloseCode.policy, "invalid query");
      } else {
        serveSocketViewer(rt, sid, query.data, socket);
      }
    };
    return response;
  });

  return app;
}

function serveSocketViewer(rt: Runtime, sid: string, query: StreamQuery, socket: WebSocket) {
  const stop = new AbortController();
  // A restarting instance closes viewers at once with 1012: they resume elsewhere with `after`.
  const onShutdown = () => {
    stop.abort();
    if (socket.readyState === WebSocket.OPEN) {
      socket.close(CloseCode.restart, "service restarting, resume with after");
    }
  };
  rt.shutdown.addEventListener("abort", onShutdown);
  socket.onclose = () => stop.abort();
  socket.onerror = () => stop.abort();
  socket.onmessage = () => {}; // viewer messages are ignored
  runViewer(rt, sid, query.after ?? query.fromId ?? 0, filterOf(query), {
    send(event) {
      if (socket.readyState === WebSocket.OPEN) socket.send(event.json);
    },
    get buffered() {
      return socket.bufferedAmount;
    },
    close(code, reason) {
      if (socket.readyState === WebSocket.OPEN) socket.close(code, reason);
    },
  }, stop.signal).catch((err) => {
    rt.log.warn("viewer failed", { sessionId: sid, err: String(err) });
    if (socket.readyState === WebSocket.OPEN) {
      socket.close(CloseCode.internalError, "internal error");
    }
  }).finally(() => rt.shutdown.removeEventListener("abort", onShutdown));
}

function sseResponse(rt: Runtime, sid: string, after: number, filter: ViewerFilter): Response {
  const encoder = new TextEncoder();
  const stop = new AbortController();
  const onStop = () => stop.abort();
  rt.shutdown.addEventListener("abort", onStop);
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (chunk: Uint8Array): void => {
        if (!stop.signal.aborted) controller.enqueue(chunk);
      };
      const keepAliveChunk = encoder.encode(": keep-alive\n\n");
      keepAlive = setInterval(() => write(keepAliveChunk), rt.config.sseKeepAliveMs);
      // The events of one batch go out in chunks of many events: a write per event costs more
      // than it sends. A large event's stored bytes go out as they are.
      let batch: BodyPiece[] = [];
      runViewer(rt, sid, after, filter, {
        send: (event) => batch.push(`id: ${event.eventId}\ndata: `, event.body, "\n\n"),
        flush() {
          for (const chunk of bodyChunks(batch)) write(chunk);
          batch = [];
        },
        get buffered() {
          return rt.config.viewerBufferBytes - (controller.desiredSize ?? 0);
        },
        close: () => stop.abort(),
      }, stop.signal).catch((err) => {
        rt.log.warn("sse viewer failed", { sessionId: sid, err: String(err) });
      }).finally(() => {
        clearInterval(keepAlive);
        rt.shutdown.removeEventListener("abort", onStop);
        try {
          controller.close();
        } catch {
          // already closed by the client
        }
      });
    },
    // The client went away (the request's own signal is not used: Deno deprecates it).
    cancel() {
      stop.abort();
      clearInterval(keepAlive);
    },
  }, new ByteLengthQueuingStrategy({ highWaterMark: rt.config.viewerBufferBytes }));
  return new Response(body, {
    headers: {
      "content-type": SSE_TYPE,
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    },
  });
}
