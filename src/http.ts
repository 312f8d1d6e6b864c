/**
 * HTTP edge helpers: the error body of PROTOCOL.md 1, zod validation of bodies, queries and
 * headers, the 64 KiB body limit and the JSON nesting limit (PROTOCOL.md 10).
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { concatBytes } from "./bytes.ts";
import { MAX_JSON_DEPTH, messageTooDeep, textDepth } from "./json_depth.ts";
import { ErrorCode, IDEMPOTENCY_KEY_HEADER, IdempotencyKey } from "./protocol.ts";

/** Largest request body accepted (PROTOCOL.md 10). */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * The HTTP status of each error code an HTTP response can carry (PROTOCOL.md 1, 2, 4, 10):
 * one code, one status.
 */
export const HTTP_STATUS = {
  [ErrorCode.invalidRequest]: 400,
  [ErrorCode.unauthorized]: 401,
  [ErrorCode.forbidden]: 403,
  [ErrorCode.sessionNotFound]: 404,
  [ErrorCode.executionNotFound]: 404,
  [ErrorCode.notFound]: 404,
  [ErrorCode.methodNotAllowed]: 405,
  [ErrorCode.sessionExists]: 409,
  [ErrorCode.executionInProgress]: 409,
  [ErrorCode.executionEnded]: 409,
  [ErrorCode.inputClosed]: 409,
  [ErrorCode.payloadTooLarge]: 413,
  [ErrorCode.idempotencyKeyReused]: 422,
  [ErrorCode.upgradeRequired]: 426,
  [ErrorCode.queueFull]: 429,
  [ErrorCode.inputQueueFull]: 429,
  [ErrorCode.internal]: 500,
  [ErrorCode.busy]: 503,
} as const satisfies Partial<Record<ErrorCode, ContentfulStatusCode>>;

/** The error codes an HTTP response can carry (the others are frame and agent codes). */
export type HttpErrorCode = keyof typeof HTTP_STATUS;

/**
 * An error the application's one error handler turns into `{error, message, ...details}`
 * with the code's status.
 *
 * @example
 * ```ts
 * import { ErrorCode } from "./protocol.ts";
 * throw new HttpError(ErrorCode.sessionNotFound, "session not found"); // 404
 * ```
 */
export class HttpError extends Error {
  /** The code's status, from {@link HTTP_STATUS}. */
  readonly status: ContentfulStatusCode;
  constructor(
    readonly code: HttpErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.status = HTTP_STATUS[code];
  }
}

/**
 * The JSON error response of PROTOCOL.md section 1, with the code's status. For handlers
 * that answer directly; elsewhere throwing an {@link HttpError} gives the same body.
 *
 * @example
 * ```ts
 * app.notFound((c) => errorResponse(c, ErrorCode.notFound, "no such route")); // 404
 * ```
 */
export function errorResponse(
  c: Context,
  code: HttpErrorCode,
  message: string,
  details: Record<string, unknown> = {},
): Response {
  return c.json({ error: code, message, ...details }, HTTP_STATUS[code]);
}

/**
 * Raises `400 INVALID_REQUEST` with zod's issues when `value` does not match `schema`;
 * `what` names the part in the message (`invalid query`).
 *
 * @example
 * ```ts
 * const query = validate(ListExecutionsQuery, c.req.query(), "query");
 * query.limit; // 100 when absent
 * ```
 */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new HttpError(ErrorCode.invalidRequest, `invalid ${what}`, {
    issues: parsed.error.issues.map((i) => ({ path: i.path, message: i.message, code: i.code })),
  });
}

/**
 * The `Idempotency-Key` header (PROTOCOL.md sections 4 and 12), validated; `undefined` when
 * absent. Raises `400 INVALID_REQUEST` for a malformed one.
 *
 * @example
 * ```ts
 * const idempotencyKey = readIdempotencyKey(c); // "retry-7f2c", or undefined
 * ```
 */
export function readIdempotencyKey(c: Context): string | undefined {
  const header = c.req.header(IDEMPOTENCY_KEY_HEADER);
  return header === undefined
    ? undefined
    : validate(IdempotencyKey, header, `${IDEMPOTENCY_KEY_HEADER} header`);
}

/**
 * Reads a JSON body (an empty body reads as `{}`), enforcing the size limit (413), JSON
 * syntax and the nesting limit (400), then validates it.
 *
 * @example
 * ```ts
 * const body = await readBody(c, CreateSessionBody);
 * body.sessionId; // undefined when the client let the service choose
 * ```
 */
export async function readBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const text = new TextDecoder().decode(await readLimited(c.req.raw));
  if (text.trim() === "") return validate(schema, {}, "body");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new HttpError(ErrorCode.invalidRequest, "body is not valid JSON", { issues: [] });
  }
  if (messageTooDeep(json)) throw tooDeep("body");
  return validate(schema, json, "body");
}

/** How much of an oversized body is still drained, so the client reads the 413 instead of a reset. */
const MAX_DRAIN_BYTES = 16 * 1024 * 1024;

/**
 * The request body, keeping at most {@link MAX_BODY_BYTES}: a longer one (with no or a false
 * `Content-Length`) is drained without being kept, up to {@link MAX_DRAIN_BYTES}, then 413.
 */
async function readLimited(req: Request): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.length;
    if (size <= MAX_BODY_BYTES) chunks.push(value);
    else if (size > MAX_DRAIN_BYTES) {
      await reader.cancel().catch(() => {});
      break;
    }
  }
  if (size > MAX_BODY_BYTES) throw tooLarge();
  return concatBytes(chunks);
}

/** `400 INVALID_REQUEST` for a value nested deeper than the limit. */
function tooDeep(what: string): HttpError {
  const message = `${what} is nested deeper than ${MAX_JSON_DEPTH} levels`;
  return new HttpError(ErrorCode.invalidRequest, message, { issues: [{ path: [], message }] });
}

/**
 * True when a query value, read as JSON, nests deeper than the limit. A WebSocket route uses
 * it to close with 1008 instead of answering 400.
 *
 * @example
 * ```ts
 * const query = queryTooDeep(c) ? undefined : StreamQuery.safeParse(c.req.query());
 * ```
 */
export function queryTooDeep(c: Context): boolean {
  return Object.values(c.req.queries()).some((values) =>
    values.some((value) => textDepth(value) > MAX_JSON_DEPTH)
  );
}

/**
 * Refuses an HTTP request whose query has a value nested deeper than the limit (400
 * `INVALID_REQUEST`) before any route decodes it. WebSocket upgrades pass: their routes
 * close with 1008 instead, as for any bad query.
 */
export const rejectDeepQuery: MiddlewareHandler = async (c, next) => {
  const upgrade = (c.req.header("upgrade") ?? "").toLowerCase() === "websocket";
  if (!upgrade && queryTooDeep(c)) throw tooDeep("query value");
  await next();
};

const tooLarge = () =>
  new HttpError(ErrorCode.payloadTooLarge, `request body exceeds ${MAX_BODY_BYTES} bytes`);

/**
 * Accepts a WebSocket upgrade; a request that says `Upgrade: websocket` without a valid
 * handshake (no `Sec-WebSocket-Key`, say) is `400 INVALID_REQUEST`, not an internal error.
 *
 * @example
 * ```ts
 * const { socket, response } = upgradeWebSocket(c.req.raw, { idleTimeout: 0 });
 * ```
 */
export function upgradeWebSocket(
  req: Request,
  options?: Deno.UpgradeWebSocketOptions,
): { socket: WebSocket; response: Response } {
  try {
    return Deno.upgradeWebSocket(req, options);
  } catch (err) {
    throw new HttpError(ErrorCode.invalidRequest, `invalid WebSocket upgrade: ${String(err)}`, {
      issues: [],
    });
  }
}
