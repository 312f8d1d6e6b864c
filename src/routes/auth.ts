/**
 * Who may call what (PROTOCOL.md 2): api keys for clients, tickets for viewers of one
 * session incarnation, and the origin allow-list. HTTP routes answer 401/403; WebSocket
 * routes get the same decision as a value and close with 4401/4403 after the upgrade.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../context.ts";
import { HttpError } from "../http.ts";
import { ErrorCode, SESSION_ID_RE } from "../protocol.ts";
import type { Runtime } from "../runtime.ts";
import type { SessionRecord } from "../store/mod.ts";
import { getLiveSession } from "../lifecycle.ts";

/** What a request needs: any valid credential for the session, or the client's api key. */
export type Need = "read" | "client";

/** The codes a refused authorization carries (HTTP 401, 403, 404; WebSocket 4401, 4403, 4404). */
export type DenialCode =
  | typeof ErrorCode.unauthorized
  | typeof ErrorCode.forbidden
  | typeof ErrorCode.sessionNotFound;

/**
 * The outcome of {@link authorize}: the caller's kind and the live session (`null` for a
 * route outside any session), or the denial to answer.
 */
export type Decision =
  | { ok: true; kind: "client" | "viewer"; session: SessionRecord | null }
  | { ok: false; code: DenialCode; message: string };

const deny = (code: DenialCode, message: string): Decision => ({ ok: false, code, message });

/**
 * The bearer token of an `Authorization` header, if any (the scheme is case-insensitive).
 *
 * @example
 * ```ts
 * bearer("Bearer tk_123"); // "tk_123"
 * bearer("Basic dXNlcg=="); // undefined
 * ```
 */
export function bearer(header: string | null | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m?.[1];
}

/**
 * False when an allow-list is set and the request's `Origin` is not on it
 * (`TETHER_ALLOWED_ORIGINS`, PROTOCOL.md section 2). A request without `Origin` (not from a
 * browser) is allowed.
 *
 * @example
 * ```ts
 * const allowed = originAllowed(rt, c.req.raw); // false: 403, or close 4403 after an upgrade
 * ```
 */
export function originAllowed(rt: Runtime, req: Request): boolean {
  const origin = req.headers.get("origin");
  return !origin || rt.config.allowedOrigins.length === 0 ||
    rt.config.allowedOrigins.includes(origin);
}

/**
 * Decides a request for session `sessionId` (`undefined` for routes outside any session),
 * by the rules of PROTOCOL.md section 2. The api key wins over a ticket when both are sent; a
 * ticket of a deleted or re-created session is `UNAUTHORIZED`, one of another session or on a
 * route that needs the client `FORBIDDEN`. A live session is looked up and returned (404
 * when missing for an authorized caller).
 *
 * @example
 * ```ts
 * const decision = await authorize(rt, c.req.raw, sid, "read");
 * if (!decision.ok) socket.close(DENIAL_CLOSE[decision.code], decision.message);
 * ```
 */
export async function authorize(
  rt: Runtime,
  req: Request,
  sessionId: string | undefined,
  need: Need,
): Promise<Decision> {
  if (!originAllowed(rt, req)) return deny(ErrorCode.forbidden, "origin not allowed");
  const key = bearer(req.headers.get("authorization"));
  const ticket = new URL(req.url).searchParams.get("ticket");
  let kind: "client" | "viewer";
  if (key !== undefined && rt.credentials.isApiKey(key)) {
    kind = "client";
  } else if (ticket) {
    const claims = await rt.credentials.verifyTicket(ticket, rt.ctx.now());
    if (!claims) return deny(ErrorCode.unauthorized, "invalid or expired ticket");
    const owner = SESSION_ID_RE.test(claims.sessionId)
      ? await getLiveSession(rt.kv, claims.sessionId)
      : null;
    if (!owner || owner.incarnation !== claims.incarnation) {
      return deny(ErrorCode.unauthorized, "ticket names a session that no longer exists");
    }
    if (claims.sessionId !== sessionId) {
      return deny(ErrorCode.forbidden, "ticket is for another session");
    }
    if (need === "client") return deny(ErrorCode.forbidden, "a ticket grants reading only");
    return { ok: true, kind: "viewer", session: owner };
  } else if (key !== undefined && await rt.credentials.isIngestToken(key)) {
    return deny(ErrorCode.forbidden, "an ingest token grants only its execution's ingest socket");
  } else {
    return deny(ErrorCode.unauthorized, "missing or invalid credentials");
  }
  if (sessionId === undefined) return { ok: true, kind, session: null };
  const session = SESSION_ID_RE.test(sessionId) ? await getLiveSession(rt.kv, sessionId) : null;
  if (!session) return deny(ErrorCode.sessionNotFound, "session not found");
  return { ok: true, kind, session };
}

/** Middleware: the api key is required (routes outside a session). */
export const requireClient: MiddlewareHandler<AppEnv> = async (c, next) => {
  const decision = await authorize(c.get("runtime"), c.req.raw, undefined, "client");
  if (!decision.ok) throw new HttpError(decision.code, decision.message);
  c.set("caller", { kind: "client" });
  await next();
};

/**
 * Middleware for `/:sid/...` routes: authorizes and loads the live session (into
 * `c.get("session")`), or throws the denial as its HTTP error.
 *
 * @example
 * ```ts
 * app.get("/:sid/executions", requireSession("read"), handler); // a ticket may read
 * app.delete("/:sid", requireSession("client"), handler); // a ticket gets 403
 * ```
 */
export function requireSession(need: Need): MiddlewareHandler<AppEnv> {
  return async (c: Context<AppEnv>, next) => {
    const sid = c.req.param("sid") ?? "";
    const decision = await authorize(c.get("runtime"), c.req.raw, sid, need);
    if (!decision.ok) throw new HttpError(decision.code, decision.message);
    c.set(
      "caller",
      decision.kind === "client" ? { kind: "client" } : { kind: "viewer", sessionId: sid },
    );
    c.set("session", decision.session!);
    await next();
  };
}
