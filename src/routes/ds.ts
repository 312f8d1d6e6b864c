/**
 * `HEAD` and `GET /v1/sessions/:sid/ds`: the session's event log through the read path of
 * the Durable Streams Protocol 1.0 (PROTOCOL.md 6.1), content type `application/json`,
 * one message per envelope. Catch-up reads return a bounded JSON array; `live=long-poll`
 * waits for the log to grow (204 on timeout); `live=sse` streams `data` and `control`
 * events and ends after about a minute so clients reconnect from their offset.
 *
 * Besides the protocol's parameters (`offset`, `live`, `cursor`) a read may pass
 * `timeout=<seconds>` (the protocol's suggested extension) to shorten how long a live read
 * stays open; it never lengthens it past the server's limit.
 *
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { AppEnv } from "../context.ts";
import {
  type Batch,
  encodeOffset,
  nextCursor,
  type OffsetRequest,
  parseOffset,
  ReadAborted,
  readBatch,
  SessionFollower,
  tailOf,
} from "../ds.ts";
import { HttpError } from "../http.ts";
import { DsQuery, DurableStreamHeader, ErrorCode } from "../protocol.ts";
import { type BodyPiece, leasedBodyStream, type ReaderLease } from "../read_budget.ts";
import { jsonArrayPieces } from "../stream.ts";
import type { Runtime } from "../runtime.ts";
import { requireSession } from "./auth.ts";

/** Options of {@link dsRoutes}. */
export interface DsRouteOptions {
  /** Longest wait of a long-poll read before its 204. Default 20000 ms. */
  longPollMs?: number;
  /** Longest life of an SSE read. Default 60000 ms (the protocol's advice). */
  sseMs?: number;
}

/** Headers on every Durable Streams response (the protocol's browser-safety advice). */
const BASE_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "cross-origin-resource-policy": "cross-origin",
};

type Live = "long-poll" | "sse" | undefined;

interface ReadRequest {
  offset: OffsetRequest;
  live: Live;
  cursor?: string;
  /** The client's `timeout`, in ms, when it gave one. */
  timeoutMs?: number;
}

function badRequest(message: string): HttpError {
  return new HttpError(ErrorCode.invalidRequest, message, { issues: [{ message }] });
}

function parseRead(c: Context<AppEnv>): ReadRequest {
  const parsed = DsQuery.safeParse(c.req.query());
  if (!parsed.success) throw badRequest(parsed.error.issues[0].message);
  const query = parsed.data;
  const offset = parseOffset(query.offset);
  if (!offset) throw badRequest("invalid offset");
  if (query.live !== undefined && query.offset === undefined) {
    throw badRequest("a live read needs an offset");
  }
  const timeoutMs = query.timeout === undefined ? undefined : query.timeout * 1000;
  return { offset, live: query.live, cursor: query.cursor, timeoutMs };
}

/**
 * The Durable Streams routes (PROTOCOL.md section 6.1), mounted at `/v1/sessions`.
 *
 * @example
 * ```ts
 * app.route("/v1/sessions", dsRoutes({ longPollMs: 1000 }));
 * ```
 */
export function dsRoutes(options: DsRouteOptions = {}): Hono<AppEnv> {
  const { longPollMs = 20_000, sseMs = 60_000 } = options;
  const app = new Hono<AppEnv>();

  // Hono answers HEAD with the GET handler (dropping the body); the handler skips the read.
  app.get("/:sid/ds", requireSession("read"), async (c) => {
    const rt = c.get("runtime");
    const sid = c.req.param("sid");
    if (c.req.method === "HEAD") return tailResponse(await existingTail(rt, sid), false);
    const read = parseRead(c);
    const cursor = read.live ? nextCursor(read.cursor, Date.now()) : undefined;
    if (read.live === "sse") {
      const after = "tail" in read.offset ? await existingTail(rt, sid) : read.offset.after;
      return sseResponse(rt, sid, after, {
        cursor: cursor!,
        maxMs: Math.min(sseMs, read.timeoutMs ?? sseMs),
      });
    }
    if ("tail" in read.offset && read.live === undefined) {
      // `offset=now` catch-up: nothing but the tail, never cached, no ETag.
      return tailResponse(await existingTail(rt, sid), true);
    }
    const waitMs = Math.min(longPollMs, read.timeoutMs ?? longPollMs);
    return await catchUpResponse(c, read, cursor, waitMs);
  });

  return app;
}

const notFound = () => new HttpError(ErrorCode.sessionNotFound, "session not found");

/** A HEAD answer, or the empty body of an `offset=now` catch-up. */
function tailResponse(tail: number, withBody: boolean): Response {
  const headers: Record<string, string> = {
    ...BASE_HEADERS,
    "content-type": "application/json",
    [DurableStreamHeader.nextOffset]: encodeOffset(tail),
  };
  if (!withBody) return new Response(null, { headers });
  return new Response("[]", { headers: { ...headers, [DurableStreamHeader.upToDate]: "true" } });
}

/** The tail of a session the middleware found; 404 when it was deleted since. */
async function existingTail(rt: Runtime, sid: string): Promise<number> {
  const tail = await tailOf(rt, sid);
  if (tail === undefined) throw notFound();
  return tail;
}

async function existingBatch(
  rt: Runtime,
  sid: string,
  after: number,
  lease: ReaderLease,
  signal: AbortSignal,
): Promise<Batch> {
  let batch: Batch | undefined;
  try {
    batch = await readBatch(rt, sid, after, lease, signal);
  } catch (err) {
    if (err instanceof ReadAborted) throw new HttpError(ErrorCode.busy, "the read was abandoned");
    throw err;
  }
  if (!batch) throw notFound();
  return batch;
}

const emptyBatch = (after: number): Batch => ({ events: [], nextAfter: after, upToDate: true });

/**
 * A catch-up or long-poll read: a bounded batch after the offset (for long-poll, waiting up
 * to `waitMs` for one), its bytes held by a lease until the client has read them.
 */
async function catchUpResponse(
  c: Context<AppEnv>,
  read: ReadRequest,
  cursor: string | undefined,
  waitMs: number,
): Promise<Response> {
  const rt = c.get("runtime");
  const sid = c.req.param("sid")!;
  // A client that leaves during a long-poll is not seen (the request's signal is deprecated
  // in Deno); the wait ends at its timeout and holds no read budget meanwhile.
  const signal = rt.shutdown;
  const after = "tail" in read.offset ? await existingTail(rt, sid) : read.offset.after;
  const lease = rt.readBudget.open();
  try {
    let batch = "tail" in read.offset
      ? emptyBatch(after)
      : await existingBatch(rt, sid, after, lease, signal);
    if (read.live === "long-poll" && batch.events.length === 0) {
      using follower = new SessionFollower(rt, sid, signal);
      const waited = await follower.waitBeyond(after, waitMs);
      if (waited === "gone") throw notFound();
      if (waited === "events") batch = await existingBatch(rt, sid, after, lease, signal);
      if (batch.events.length === 0) {
        lease[Symbol.dispose]();
        return noContent(batch, cursor!);
      }
    }
    return batchResponse(c, sid, after, batch, cursor, lease);
  } catch (err) {
    lease[Symbol.dispose]();
    throw err;
  }
}

/** A long-poll that timed out: 204 with the offset to continue from. */
function noContent(batch: Batch, cursor: string): Response {
  return new Response(null, {
    status: 204,
    headers: {
      ...BASE_HEADERS,
      [DurableStreamHeader.nextOffset]: encodeOffset(batch.nextAfter),
      [DurableStreamHeader.upToDate]: "true",
      [DurableStreamHeader.cursor]: cursor,
    },
  });
}

/** A 200 with the batch as a JSON array, its ETag, or a 304 when the client has it. */
function batchResponse(
  c: Context<AppEnv>,
  sid: string,
  after: number,
  batch: Batch,
  cursor: string | undefined,
  lease: ReaderLease,
): Response {
  const headers: Record<string, string> = {
    ...BASE_HEADERS,
    "content-type": "application/json",
    [DurableStreamHeader.nextOffset]: encodeOffset(batch.nextAfter),
    etag: `"${sid}:${encodeOffset(after)}:${encodeOffset(batch.nextAfter)}"`,
  };
  if (batch.upToDate) headers[DurableStreamHeader.upToDate] = "true";
  if (cursor) headers[DurableStreamHeader.cursor] = cursor;
  // RFC 9110 13.1.2: `*` matches, and tags compare weakly (a `W/` prefix is ignored).
  const ifNoneMatch = c.req.header("if-none-match");
  const matches = (tag: string) => tag === "*" || tag.replace(/^W\//, "") === headers.etag;
  if (ifNoneMatch?.split(",").some((tag) => matches(tag.trim()))) {
    lease[Symbol.dispose]();
    return new Response(null, { status: 304, headers });
  }
  return new Response(leasedBodyStream(lease, jsonArrayPieces(batch.events)), { headers });
}

/**
 * An SSE read: `data` events holding JSON arrays, each followed by a `control` event. The
 * body is pulled: the next batch is read only once the client took the previous one, and
 * the lease holds what it has not taken yet.
 */
function sseResponse(
  rt: Runtime,
  sid: string,
  after: number,
  options: { cursor: string; maxMs: number },
): Response {
  // The body's cancel (the client went away) or the instance's shutdown stops the read.
  const stop = new AbortController();
  const signal = AbortSignal.any([rt.shutdown, stop.signal]);
  const lease = rt.readBudget.open();
  const events = sseEvents(rt, sid, after, lease, { ...options, signal });
  const next = async () => {
    try {
      const step = await events.next();
      return step.done ? undefined : step.value;
    } catch (err) {
      if (!(err instanceof ReadAborted)) {
        rt.log.warn("durable stream read failed", { sessionId: sid, err: String(err) });
      }
      return undefined;
    }
  };
  const onEnd = () => {
    stop.abort();
    void events.return(undefined);
  };
  return new Response(leasedBodyStream(lease, [], next, onEnd), {
    headers: {
      ...BASE_HEADERS,
      "content-type": "text/event-stream",
      "x-accel-buffering": "no",
    },
  });
}

async function* sseEvents(
  rt: Runtime,
  sid: string,
  after: number,
  lease: ReaderLease,
  options: { cursor: string; maxMs: number; signal: AbortSignal },
): AsyncGenerator<readonly BodyPiece[]> {
  const endAt = Date.now() + options.maxMs;
  using follower = new SessionFollower(rt, sid, options.signal);
  let cursor = after;
  let first = true;
  while (!options.signal.aborted && Date.now() < endAt) {
    const batch = await readBatch(rt, sid, cursor, lease, options.signal);
    if (!batch) return;
    if (batch.events.length > 0 || first) {
      first = false;
      cursor = batch.nextAfter;
      yield sseChunk(batch, options.cursor);
      if (!batch.upToDate) continue;
    }
    const left = endAt - Date.now();
    const outcome = await follower.waitBeyond(cursor, Math.min(left, rt.config.sseKeepAliveMs));
    if (outcome === "gone" || outcome === "aborted") return;
    if (outcome === "timeout" && Date.now() < endAt) yield [": keep-alive\n\n"];
  }
}

/** One batch as SSE: a `data` event with its JSON array (when not empty), then `control`. */
function sseChunk(batch: Batch, streamCursor: string): BodyPiece[] {
  const control = JSON.stringify({
    streamNextOffset: encodeOffset(batch.nextAfter),
    streamCursor,
    ...(batch.upToDate ? { upToDate: true } : {}),
  });
  const data = batch.events.length > 0
    ? ["event: data\ndata: ", ...jsonArrayPieces(batch.events), "\n\n"]
    : [];
  return [...data, `event: control\ndata: ${control}\n\n`];
}
