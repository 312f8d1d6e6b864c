/**
 * The Tether client (PROTOCOL.md 13): a typed method for every HTTP route, errors as
 * {@link TetherError}, retries of idempotent calls, and {@link TetherClient.follow}, which
 * follows a session's events over Server-Sent Events, resuming after a drop, each event once
 * and in order. Runs on Deno, Node 20+ and browsers (it only needs `fetch`).
 *
 * @example
 * ```ts
 * import { TetherClient } from "@tether/tether/client";
 *
 * const tether = new TetherClient({ url: "http://localhost:8000", apiKey: "dev_…" });
 * const { sessionId } = await tether.createSession({ metadata: { repo: "x" } });
 * const run = await tether.createExecution(sessionId, { input: { prompt: "fix the tests" } });
 * for await (const event of tether.follow(sessionId)) {
 *   console.log(event.eventId, event.streamEventType, event.data);
 * }
 * ```
 *
 * @module
 */
import { backoffDelay, delay } from "../src/async.ts";
import { DurableStreamHeader, ErrorCode } from "../src/protocol.ts";
import type {
  CreateExecutionBody,
  CreateSessionBody,
  Envelope,
  ErrorBody,
  EventsPage,
  ExecutionCreated,
  ExecutionList,
  ExecutionView,
  FailResult,
  InputAccepted,
  InputRequest,
  InterruptAccepted,
  SessionCreated,
  SessionView,
  TicketCreated,
} from "../src/protocol.ts";
import { parseSse } from "../wrapper/sse.ts";

export type {
  CreateExecutionBody,
  CreateSessionBody,
  Envelope,
  EventsPage,
  ExecutionCreated,
  ExecutionList,
  ExecutionView,
  FailResult,
  InputAccepted,
  InputRequest,
  InterruptAccepted,
  SessionCreated,
  SessionView,
  TicketCreated,
};

/**
 * An error answer of the service (`{error, message, ...details}`, PROTOCOL.md 1), or a
 * network failure (`status` 0, `code` `NETWORK_ERROR`).
 *
 * @example
 * ```ts
 * try {
 *   await tether.getSession("nope");
 * } catch (err) {
 *   if (err instanceof TetherError && err.code === "SESSION_NOT_FOUND") console.log("gone");
 * }
 * ```
 */
export class TetherError extends Error {
  /** Always `"TetherError"`. */
  override name = "TetherError";
  /** The HTTP status; 0 when the service could not be reached. */
  readonly status: number;
  /** The body's `error` code, e.g. `SESSION_NOT_FOUND`; `NETWORK_ERROR` when unreachable. */
  readonly code: string;
  /** The body's other fields (`issues`, `activeExecutionId`, …). */
  readonly details: Record<string, unknown>;

  /** An error with the answer's status, its `error` code, message and other fields. */
  constructor(status: number, code: string, message: string, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/**
 * `code` of a {@link TetherError} for a service that could not be reached.
 *
 * @example
 * ```ts
 * if (err instanceof TetherError && err.code === NETWORK_ERROR) console.error("service down");
 * ```
 */
export const NETWORK_ERROR = "NETWORK_ERROR";

/**
 * Options of {@link TetherClient}.
 *
 * @example
 * ```ts
 * const options: TetherClientOptions = { url: "http://localhost:8000", apiKey: "dev_…", retries: 5 };
 * ```
 */
export interface TetherClientOptions {
  /** The service's base URL, e.g. `http://localhost:8000`. */
  url: string;
  /** The api key (sent as `Authorization: Bearer`). */
  apiKey?: string;
  /** A viewer ticket (sent as `?ticket=`) for the read routes of one session. */
  ticket?: string;
  /** Retries of an idempotent call after a 5xx or network error. Default 3. */
  retries?: number;
  /** First retry delay, doubled each time (with jitter). Default 200 ms. */
  retryBaseMs?: number;
  /** Longest retry or reconnect delay. Default 5000 ms. */
  retryMaxMs?: number;
  /** The `fetch` to use. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

/**
 * Options of {@link TetherClient.follow}.
 *
 * @example
 * ```ts
 * const options: FollowOptions = { after: 10, eventTypes: ["agent"], signal: AbortSignal.timeout(60_000) };
 * ```
 */
export interface FollowOptions {
  /** Deliver events after this eventId. Default 0 (from the first). */
  after?: number;
  /** Only events of these executions. */
  executionIds?: readonly string[];
  /** Only events of these types. */
  eventTypes?: readonly string[];
  /** Ends the iteration. */
  signal?: AbortSignal;
  /**
   * Failed connection attempts in a row (network, 5xx) before `follow` throws. Default 10;
   * a connection that delivered anything resets the count.
   */
  reconnectAttempts?: number;
  /** Called before each reconnect, with the reason; for progress display. */
  onReconnect?: (reason: string) => void;
}

/**
 * Options of the calls that accept an `Idempotency-Key`.
 *
 * @example
 * ```ts
 * await tether.createExecution("s1", {}, { idempotencyKey: "run-1" });
 * ```
 */
export interface IdempotencyOptions {
  /** Makes the call safe to retry (PROTOCOL.md 4); the client then retries it on 5xx. */
  idempotencyKey?: string;
}

/**
 * Options of {@link TetherClient.readDurableStream}.
 *
 * @example
 * ```ts
 * const options: DurableStreamReadOptions = { offset: read.nextOffset, live: "long-poll", cursor: read.cursor };
 * ```
 */
export interface DurableStreamReadOptions {
  /**
   * Where to read from: a `nextOffset` of an earlier read, `-1` (the start) or `now` (the
   * tail). Default `-1`.
   */
  offset?: string;
  /**
   * `long-poll`: when nothing follows `offset`, wait for the next event (about 20 s at most,
   * less with `timeoutSeconds`) and answer with none if it does not come. Default: answer
   * at once (a catch-up read).
   */
  live?: "long-poll";
  /** The `cursor` of the previous live read (the protocol's cache-busting echo). */
  cursor?: string;
  /** Shortens the wait of a live read (whole seconds). Default: the service's wait. */
  timeoutSeconds?: number;
  /** Abandons the read. */
  signal?: AbortSignal;
}

/**
 * Where a session's Durable Streams log stands (PROTOCOL.md 6.1), from its response headers.
 *
 * @example
 * ```ts
 * const { nextOffset } = await tether.headDurableStream("s1"); // "0000000000000042"
 * ```
 */
export interface DurableStreamPosition {
  /** `Stream-Next-Offset`: the offset to read from next (opaque, sortable). */
  nextOffset: string;
}

/**
 * One read of a session's Durable Streams log: its envelopes and where to go on.
 *
 * @example
 * ```ts
 * const read: DurableStreamRead = await tether.readDurableStream("s1");
 * console.log(read.events.length, read.nextOffset, read.upToDate);
 * ```
 */
export interface DurableStreamRead extends DurableStreamPosition {
  /** The envelopes after the offset read from, in order (none when a long-poll timed out). */
  events: Envelope[];
  /** `Stream-Up-To-Date`: the read reached the end of the log. */
  upToDate: boolean;
  /** `Stream-Cursor` of a live read: pass it to the next live read. */
  cursor?: string;
}

interface Call {
  method: "GET" | "HEAD" | "POST" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Safe to repeat: retried on 5xx and network errors. */
  idempotent: boolean;
}

const enc = encodeURIComponent;
const SSE_CONTENT_TYPE = "text/event-stream";

/**
 * A client of one Tether service.
 *
 * @example
 * ```ts
 * const tether = new TetherClient({ url: "http://localhost:8000", apiKey: Deno.env.get("TETHER_API_KEY") });
 * const session = await tether.getSession("demo");
 * console.log(session.activeExecutionId);
 * ```
 */
export class TetherClient {
  /** The base URL, without a trailing slash. */
  readonly url: string;
  readonly #options: TetherClientOptions;
  readonly #fetch: typeof fetch;

  /** A client of the service at `options.url`. */
  constructor(options: TetherClientOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.#options = options;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** `POST /v1/sessions`. */
  createSession(body: CreateSessionBody = {}): Promise<SessionCreated> {
    return this.#json({ method: "POST", path: "/v1/sessions", body, idempotent: false });
  }

  /** `GET /v1/sessions/:sid`. */
  getSession(sessionId: string): Promise<SessionView> {
    return this.#json({ method: "GET", path: `/v1/sessions/${enc(sessionId)}`, idempotent: true });
  }

  /** `DELETE /v1/sessions/:sid`. */
  async deleteSession(sessionId: string): Promise<void> {
    await this.#request({
      method: "DELETE",
      path: `/v1/sessions/${enc(sessionId)}`,
      idempotent: false,
    });
  }

  /** `POST /v1/sessions/:sid/executions`; retried on 5xx only with an `idempotencyKey`. */
  createExecution(
    sessionId: string,
    body: CreateExecutionBody = {},
    options: IdempotencyOptions = {},
  ): Promise<ExecutionCreated> {
    return this.#json({
      method: "POST",
      path: `/v1/sessions/${enc(sessionId)}/executions`,
      body,
      ...idempotency(options),
    });
  }

  /** `GET /v1/sessions/:sid/executions`, oldest first. */
  listExecutions(
    sessionId: string,
    query: { limit?: number; after?: string } = {},
  ): Promise<ExecutionList> {
    return this.#json({
      method: "GET",
      path: `/v1/sessions/${enc(sessionId)}/executions`,
      query,
      idempotent: true,
    });
  }

  /** `GET /v1/sessions/:sid/executions/:eid`. */
  getExecution(sessionId: string, executionId: string): Promise<ExecutionView> {
    return this.#json({
      method: "GET",
      path: `/v1/sessions/${enc(sessionId)}/executions/${enc(executionId)}`,
      idempotent: true,
    });
  }

  /** `POST …/interrupt`. */
  interruptExecution(
    sessionId: string,
    executionId: string,
    body: { reason?: string } = {},
  ): Promise<InterruptAccepted> {
    return this.#json({
      method: "POST",
      path: `/v1/sessions/${enc(sessionId)}/executions/${enc(executionId)}/interrupt`,
      body,
      idempotent: false,
    });
  }

  /** `POST …/fail`. */
  failExecution(
    sessionId: string,
    executionId: string,
    body: { error: string; streamEventType?: string },
  ): Promise<FailResult> {
    return this.#json({
      method: "POST",
      path: `/v1/sessions/${enc(sessionId)}/executions/${enc(executionId)}/fail`,
      body,
      idempotent: false,
    });
  }

  /** `POST …/input` (PROTOCOL.md 12); retried on 5xx only with an `idempotencyKey`. */
  sendInput(
    sessionId: string,
    executionId: string,
    body: InputRequest,
    options: IdempotencyOptions = {},
  ): Promise<InputAccepted> {
    return this.#json({
      method: "POST",
      path: `/v1/sessions/${enc(sessionId)}/executions/${enc(executionId)}/input`,
      body,
      ...idempotency(options),
    });
  }

  /** `GET /v1/sessions/:sid/events` as one JSON page. */
  getEvents(
    sessionId: string,
    query: { after?: number; limit?: number; executionIds?: string[]; eventTypes?: string[] } = {},
  ): Promise<EventsPage> {
    return this.#json({
      method: "GET",
      path: `/v1/sessions/${enc(sessionId)}/events`,
      query: {
        after: query.after,
        limit: query.limit,
        executionIds: query.executionIds?.join(","),
        eventTypes: query.eventTypes?.join(","),
      },
      idempotent: true,
    });
  }

  /** `POST /v1/sessions/:sid/tickets`. */
  createTicket(sessionId: string, body: { ttlMs?: number } = {}): Promise<TicketCreated> {
    return this.#json({
      method: "POST",
      path: `/v1/sessions/${enc(sessionId)}/tickets`,
      body,
      idempotent: false,
    });
  }

  /**
   * `GET /v1/sessions/:sid/ds` (PROTOCOL.md 6.1): one read of the session's whole log through
   * the Durable Streams protocol: the envelopes after `offset` (a bounded batch: read again
   * from `nextOffset` until `upToDate`), or, with `live: "long-poll"`, the next ones as they
   * are stored. For SSE reads, use a Durable Streams client (`@durable-streams/client`).
   *
   * @example
   * ```ts
   * let read = await tether.readDurableStream("s1"); // from the start
   * for (;;) {
   *   for (const event of read.events) console.log(event.eventId, event.streamEventType);
   *   read = await tether.readDurableStream("s1", {
   *     offset: read.nextOffset,
   *     ...(read.upToDate ? { live: "long-poll", cursor: read.cursor } : {}),
   *   });
   * }
   * ```
   */
  async readDurableStream(
    sessionId: string,
    options: DurableStreamReadOptions = {},
  ): Promise<DurableStreamRead> {
    const res = await this.#request({
      method: "GET",
      path: `/v1/sessions/${enc(sessionId)}/ds`,
      query: {
        offset: options.offset ?? "-1",
        live: options.live,
        cursor: options.cursor,
        timeout: options.timeoutSeconds,
      },
      idempotent: true,
    }, options.signal);
    // 204: a long-poll that timed out.
    const events = res.status === 204 ? [] : await jsonBody<unknown>(res);
    if (!Array.isArray(events)) {
      throw unexpectedAnswer(res, JSON.stringify(events), "is not a JSON array");
    }
    const cursor = res.headers.get(DurableStreamHeader.cursor) ?? undefined;
    return {
      events: events as Envelope[],
      ...positionOf(res),
      upToDate: res.headers.get(DurableStreamHeader.upToDate) === "true",
      ...(cursor === undefined ? {} : { cursor }),
    };
  }

  /**
   * `HEAD /v1/sessions/:sid/ds` (PROTOCOL.md 6.1): where the session's log ends, without
   * reading it. A HEAD answer has no body, so after a refusal the client asks once more with
   * a GET of the tail (`offset=now`, which reads no event) to learn the error's code.
   *
   * @example
   * ```ts
   * const { nextOffset } = await tether.headDurableStream("s1");
   * const next = await tether.readDurableStream("s1", { offset: nextOffset, live: "long-poll" });
   * ```
   */
  async headDurableStream(
    sessionId: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<DurableStreamPosition> {
    const path = `/v1/sessions/${enc(sessionId)}/ds`;
    try {
      return positionOf(
        await this.#request({ method: "HEAD", path, idempotent: true }, options.signal),
      );
    } catch (err) {
      if (!(err instanceof TetherError && err.code === httpCode(err.status))) throw err;
    }
    const { nextOffset } = await this.readDurableStream(sessionId, { offset: "now", ...options });
    return { nextOffset };
  }

  /** `GET /v1/openapi.json`: the service's OpenAPI 3.1 document. */
  openApi(): Promise<Record<string, unknown>> {
    return this.#json({ method: "GET", path: "/v1/openapi.json", idempotent: true });
  }

  /**
   * The viewer page's URL for a session; with a `ticket` it opens read-only without a key.
   *
   * @example
   * ```ts
   * const { ticket } = await tether.createTicket("s1", { ttlMs: 3_600_000 });
   * console.log(tether.viewerUrl("s1", ticket));
   * ```
   */
  viewerUrl(sessionId: string, ticket?: string): string {
    const query = new URLSearchParams({ session: sessionId });
    if (ticket) query.set("ticket", ticket);
    return `${this.url}/?${query}`;
  }

  /**
   * Follows a session's events over SSE: stored events after `after`, then live ones. After
   * a drop it reconnects with `Last-Event-ID` set to the last event delivered, so every
   * event comes exactly once and in eventId order. Ends when `signal` aborts or the
   * session is deleted while followed; throws a {@link TetherError} for any other refusal
   * (a session that does not exist when `follow` starts: `SESSION_NOT_FOUND`), or after
   * `reconnectAttempts` failed attempts in a row.
   *
   * @example
   * ```ts
   * const stop = new AbortController();
   * for await (const event of tether.follow("s1", { eventTypes: ["execution_status"], signal: stop.signal })) {
   *   if ((event.data as { status: string }).status === "completed") stop.abort();
   * }
   * ```
   */
  async *follow(sessionId: string, options: FollowOptions = {}): AsyncGenerator<Envelope> {
    const { signal, reconnectAttempts = 10 } = options;
    let last = options.after ?? 0;
    let failures = 0;
    let opened = false;
    let endedByService = false;
    while (!signal?.aborted) {
      let reason: string;
      try {
        const res = await this.#openStream(sessionId, last, options, { opened, endedByService });
        if (res === "gone") return;
        opened = true;
        endedByService = false;
        for await (const event of parseSse(res.body!)) {
          const envelope = parseAnswer<Envelope>(
            res,
            event.data,
            "carries an event that is not JSON",
          );
          if (envelope.eventId <= last) continue; // replayed by a resume: already delivered
          last = envelope.eventId;
          failures = 0;
          yield envelope;
        }
        // The service ends the stream when the session is deleted (or it shuts down):
        // reconnecting tells which.
        endedByService = true;
        reason = "stream ended";
      } catch (err) {
        if (signal?.aborted) return;
        if (err instanceof TetherError && err.status > 0 && err.status < 500) throw err;
        if (++failures >= reconnectAttempts) throw err;
        reason = err instanceof Error ? err.message : String(err);
      }
      options.onReconnect?.(reason);
      await delay(this.#backoff(Math.max(failures, 1)), { signal }).catch(() => {});
    }
  }

  /**
   * Opens the SSE response, or `"gone"` when a session that was followed no longer exists: a
   * 404 once a stream was open (before that, the session never existed: its 404 is thrown),
   * or, for a ticket holder right after the service ended the stream, the 401 of a ticket
   * whose session was deleted (an open stream outlives its ticket's expiry, so that 401
   * means deletion).
   */
  async #openStream(
    sessionId: string,
    after: number,
    options: FollowOptions,
    state: { opened: boolean; endedByService: boolean },
  ): Promise<Response | "gone"> {
    let res: Response;
    try {
      res = await this.#request({
        method: "GET",
        path: `/v1/sessions/${enc(sessionId)}/events`,
        query: {
          executionIds: options.executionIds?.join(","),
          eventTypes: options.eventTypes?.join(","),
        },
        headers: { accept: SSE_CONTENT_TYPE, "last-event-id": String(after) },
        idempotent: false,
      }, options.signal);
    } catch (err) {
      if (!(err instanceof TetherError) || !state.opened) throw err;
      if (err.code === ErrorCode.sessionNotFound) return "gone";
      const ticketOnly = this.#options.ticket !== undefined && !this.#options.apiKey;
      if (ticketOnly && state.endedByService && err.status === 401) {
        return "gone";
      }
      throw err;
    }
    if (!res.headers.get("content-type")?.startsWith(SSE_CONTENT_TYPE)) {
      throw unexpectedAnswer(res, await startOf(res), "is not an event stream");
    }
    return res;
  }

  async #json<T>(call: Call): Promise<T> {
    return jsonBody<T>(await this.#request(call));
  }

  /** One call with its retries; a non-2xx answer becomes a {@link TetherError}. */
  async #request(call: Call, signal?: AbortSignal): Promise<Response> {
    const retries = call.idempotent ? this.#options.retries ?? 3 : 0;
    for (let attempt = 0;; attempt++) {
      let error: TetherError;
      try {
        const res = await this.#fetch(this.#urlOf(call), {
          method: call.method,
          headers: this.#headersOf(call),
          body: call.body === undefined ? undefined : JSON.stringify(call.body),
          signal,
        });
        if (res.ok) return res;
        error = await errorOf(res);
      } catch (err) {
        if (signal?.aborted) throw err;
        error = new TetherError(0, NETWORK_ERROR, `cannot reach ${this.url}: ${messageOf(err)}`);
      }
      const transient = error.status === 0 || error.status >= 500;
      if (!transient || attempt >= retries) throw error;
      await delay(this.#backoff(attempt + 1), { signal });
    }
  }

  #urlOf(call: Call): string {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined && value !== "") query.set(name, String(value));
    }
    if (this.#options.ticket && !this.#options.apiKey) query.set("ticket", this.#options.ticket);
    const text = query.toString();
    return `${this.url}${call.path}${text ? `?${text}` : ""}`;
  }

  #headersOf(call: Call): Record<string, string> {
    const headers: Record<string, string> = { ...call.headers };
    if (this.#options.apiKey) headers.authorization = `Bearer ${this.#options.apiKey}`;
    if (call.body !== undefined) headers["content-type"] = "application/json";
    return headers;
  }

  #backoff(attempt: number): number {
    const { retryBaseMs = 200, retryMaxMs = 5000 } = this.#options;
    return backoffDelay(attempt, { baseMs: retryBaseMs, maxMs: retryMaxMs });
  }
}

function idempotency(options: IdempotencyOptions): Pick<Call, "headers" | "idempotent"> {
  return options.idempotencyKey === undefined
    ? { idempotent: false }
    : { headers: { "idempotency-key": options.idempotencyKey }, idempotent: true };
}

/** The JSON body of a 2xx answer; a body that is not JSON was not sent by the service. */
async function jsonBody<T>(res: Response): Promise<T> {
  return parseAnswer<T>(res, await res.text(), "is not JSON");
}

/** `text` (part of `res`) parsed as JSON, or the {@link unexpectedAnswer} naming `problem`. */
function parseAnswer<T>(res: Response, text: string, problem: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw unexpectedAnswer(res, text, problem);
  }
}

/** The `Stream-Next-Offset` of a Durable Streams answer, which every one carries. */
function positionOf(res: Response): DurableStreamPosition {
  const nextOffset = res.headers.get(DurableStreamHeader.nextOffset);
  if (nextOffset === null) {
    throw unexpectedAnswer(res, "", `has no ${DurableStreamHeader.nextOffset} header`);
  }
  return { nextOffset };
}

async function errorOf(res: Response): Promise<TetherError> {
  const text = await res.text().catch(() => "");
  try {
    const { error, message, ...details } = JSON.parse(text) as ErrorBody;
    if (typeof error === "string") {
      return new TetherError(res.status, error, String(message ?? error), details);
    }
  } catch {
    // not the error body of PROTOCOL.md 1 (a proxy's page, say)
  }
  return unexpectedAnswer(res, text);
}

/**
 * An answer that is not the service's (a proxy's or a captive portal's page, say): code
 * `HTTP_<status>`, the problem when the status alone does not tell it, and the start of the
 * body, so the user sees who answered.
 */
function unexpectedAnswer(res: Response, text: string, problem?: string): TetherError {
  const shown = text.slice(0, 200).replace(/\s+/g, " ").trim() || res.statusText;
  const type = res.headers.get("content-type") ?? "no content type";
  const message = problem ? `the answer ${problem} (${type}): ${shown}` : shown;
  return new TetherError(res.status, httpCode(res.status), message);
}

/** The `code` of an answer that carries none: `HTTP_<status>`. */
function httpCode(status: number): string {
  return `HTTP_${status}`;
}

/** The first chunk of a body that may never end; the rest is discarded. */
async function startOf(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return "";
  try {
    const { value } = await reader.read();
    return value ? new TextDecoder().decode(value) : "";
  } finally {
    reader.cancel().catch(() => {});
  }
}

function messageOf(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
  return err instanceof Error ? `${err.message}${cause}` : String(err);
}
