/**
 * The Hono application: small routers composed under `/v1`, with validation at the edge,
 * the error body of PROTOCOL.md 1, 404/405 for unknown routes and methods, and CORS from
 * the origin allow-list. WebSocket routes are mounted before any middleware that touches
 * response headers.
 *
 * @module
 */
import { MetricName } from "./metrics.ts";
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "./context.ts";
import { errorResponse, HttpError, rejectDeepQuery } from "./http.ts";
import { DurableStreamHeader, ErrorCode, IDEMPOTENCY_KEY_HEADER } from "./protocol.ts";
import { probeKv, TransactionConflictError } from "./store/mod.ts";
import type { Runtime } from "./runtime.ts";
import { authorize, originAllowed } from "./routes/auth.ts";
import { sessionRoutes } from "./routes/sessions.ts";
import { inputRoutes } from "./routes/input.ts";
import { streamRoutes } from "./routes/stream.ts";
import { ingestRoutes } from "./routes/ingest.ts";
import { dsRoutes } from "./routes/ds.ts";
import { viewerPageRoutes } from "./routes/viewer_page.ts";
import { openApiRoutes } from "./routes/openapi.ts";

/** Path patterns the service knows, for 405 on a wrong method. */
const KNOWN_PATHS = [
  "/v1/sessions",
  "/v1/sessions/:sid",
  "/v1/sessions/:sid/executions",
  "/v1/sessions/:sid/executions/:eid",
  "/v1/sessions/:sid/executions/:eid/interrupt",
  "/v1/sessions/:sid/executions/:eid/fail",
  "/v1/sessions/:sid/executions/:eid/input",
  "/v1/sessions/:sid/executions/:eid/ingest",
  "/v1/sessions/:sid/events",
  "/v1/sessions/:sid/stream",
  "/v1/sessions/:sid/tickets",
  "/v1/sessions/:sid/ds",
  "/v1/openapi.json",
  "/",
  "/healthz",
  "/metrics",
];

/**
 * Builds the application for one runtime: every route, the origin policy, `/healthz`,
 * `/metrics`, and the 404/405 fallbacks and error handler.
 *
 * @example
 * ```ts
 * const app = createApp(rt);
 * const res = await app.request("/healthz"); // 200 {"status":"ok"}
 * ```
 */
export function createApp(rt: Runtime): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", async (c, next) => {
    c.set("runtime", rt);
    // A Host that makes no URL (`Host: a b`) is bad input, before any route reads the URL.
    if (!URL.canParse(c.req.url)) {
      return errorResponse(c, ErrorCode.invalidRequest, "malformed Host header");
    }
    await next();
  });
  useOriginPolicy(app, rt);
  mountRoutes(app);
  addOperationsRoutes(app, rt);
  addFallbacks(app, rt);
  return app;
}

/**
 * The origin allow-list and CORS headers for every HTTP route under /v1 (errors, 404 and
 * 405 included).
 */
function useOriginPolicy(app: Hono<AppEnv>, rt: Runtime): void {
  // WebSocket upgrades pass through untouched: a 101 response's headers are immutable, and
  // an upgrade answers a foreign origin with 4403 itself.
  const corsHeaders = cors({
    origin: (origin) =>
      rt.config.allowedOrigins.length === 0 || rt.config.allowedOrigins.includes(origin)
        ? origin
        : null,
    allowHeaders: ["Authorization", "Content-Type", IDEMPOTENCY_KEY_HEADER, "Last-Event-ID"],
    allowMethods: ["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
    exposeHeaders: [
      "Content-Type",
      "ETag",
      DurableStreamHeader.nextOffset,
      DurableStreamHeader.upToDate,
      DurableStreamHeader.cursor,
    ],
    maxAge: 600,
  });
  app.use("/v1/*", async (c, next) => {
    if ((c.req.header("upgrade") ?? "").toLowerCase() === "websocket") return await next();
    if (!originAllowed(rt, c.req.raw)) {
      return errorResponse(c, ErrorCode.forbidden, "origin not allowed");
    }
    return await corsHeaders(c, next);
  });
  app.use("/v1/*", rejectDeepQuery);
}

/** The API's routers; WebSocket routes first, before any middleware that touches headers. */
function mountRoutes(app: Hono<AppEnv>): void {
  app.route("/v1/sessions", ingestRoutes());
  app.route("/v1/sessions", streamRoutes());
  app.route("/v1/sessions", sessionRoutes());
  app.route("/v1/sessions", inputRoutes());
  app.route("/v1/sessions", dsRoutes());
  app.route("/", openApiRoutes());
  app.route("/", viewerPageRoutes());
}

/** `GET /healthz` (no credentials, no allow-list) and `GET /metrics` (the api key). */
function addOperationsRoutes(app: Hono<AppEnv>, rt: Runtime): void {
  app.get("/healthz", async (c) => {
    try {
      await probeKv(rt.kv, rt.config.healthzTimeoutMs);
      return c.json({ status: "ok" });
    } catch {
      return c.json({ status: "unavailable" }, 503);
    }
  });

  app.get("/metrics", async (c) => {
    const decision = await authorize(rt, c.req.raw, undefined, "client");
    if (!decision.ok) return errorResponse(c, decision.code, decision.message);
    rt.metrics.set(MetricName.ingestSockets, rt.hub.connectionCount);
    rt.metrics.set(MetricName.viewerSockets, rt.hub.viewerCount);
    return c.text(rt.metrics.render(), 200, { "content-type": "text/plain; version=0.0.4" });
  });
}

/** 405 on a known path, 404 elsewhere, and the one error handler that answers every error. */
function addFallbacks(app: Hono<AppEnv>, rt: Runtime): void {
  for (const path of KNOWN_PATHS) {
    app.all(
      path,
      (c) => errorResponse(c, ErrorCode.methodNotAllowed, `${c.req.method} not allowed`),
    );
  }
  app.notFound((c) => errorResponse(c, ErrorCode.notFound, "no such route"));
  app.onError((err, c) => {
    if (err instanceof HttpError) {
      return errorResponse(c, err.code, err.message, err.details);
    }
    if (err instanceof TransactionConflictError) {
      rt.log.warn("transaction kept conflicting", { path: c.req.path });
      return errorResponse(c, ErrorCode.busy, "too much contention, try again");
    }
    rt.log.error("unhandled error", { path: c.req.path, err: String(err?.stack ?? err) });
    return errorResponse(c, ErrorCode.internal, "internal error");
  });
}
