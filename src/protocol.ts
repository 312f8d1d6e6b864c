/**
 * The wire contract of Tether (PROTOCOL.md) as zod schemas and inferred types: REST bodies
 * and responses, ingest frames in both directions, the viewer envelope, close codes and the
 * fixed texts. The service and the wrapper both import this module, so a refactor that
 * changes a payload shape breaks the type check instead of a consumer.
 *
 * @module
 */
import { z } from "zod";

/** Session ids: chosen by the client or generated (`ses_` + ULID). */
export const SESSION_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
/** Event type names a wrapper or the fail route may use. */
export const STREAM_EVENT_TYPE_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Execution ids are generated: `exc_` + 26-character ULID. */
export const EXECUTION_ID_RE = /^exc_[0-9A-HJKMNP-TV-Z]{26}$/;
/** `wrapperId` part of `X-Tether-Dial`. */
export const WRAPPER_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Event types of the input channel (PROTOCOL.md section 12). */
export const InputEventType = {
  /** The service's event for an accepted input, and the `type` of its service frame. */
  input: "input",
  /** The wrapper's stored frame confirming that inputs were written to the agent. */
  delivered: "input_delivered",
} as const;

/** Event types only the service may emit. */
export const RESERVED_EVENT_TYPES: ReadonlySet<string> = new Set([
  "execution_status",
  "wrapper_disconnected",
  InputEventType.input,
]);

/** Longest error text kept on a record (in Unicode code points). */
export const MAX_STORED_ERROR_CHARS = 1024;

/**
 * WebSocket close codes of the contract, each with the PROTOCOL.md section that gives it.
 * Codes outside the 4xxx range are the standard ones the contract names; `internalError`
 * (1011) is not in the contract's table and falls under its "other" row (connection lost).
 */
export const CloseCode = {
  /** §4, §6: a viewer of a deleted session; §5.3: connection lost. */
  normal: 1000,
  /** §5.3: connection lost (a peer going away). */
  goingAway: 1001,
  /** §5.3, §5.4: a loss without a close frame is recorded as 1006. */
  abnormal: 1006,
  /** §5.3, §10: rate, in-flight or pending-bytes limit; §6: a viewer stream's bad query. */
  policy: 1008,
  /** §5.3, §10: a frame larger than `maxFrameBytes`. */
  tooBig: 1009,
  /** §5.3 "other": the service could not serve the connection (storage failed). */
  internalError: 1011,
  /** §5.3, §5.4: the service is restarting. */
  restart: 1012,
  /** §6, §10: a viewer whose buffer did not drain. */
  tryAgainLater: 1013,
  /** §5, §5.3: the execution is terminal (reason `execution <status>`). */
  executionDone: 4000,
  /** §5, §5.3: replaced by a newer connection for the same execution. */
  replaced: 4001,
  /** §5, §5.3: the execution is queued, not active yet. */
  notActiveYet: 4009,
  /** §2, §5.3: missing or invalid credentials. */
  unauthorized: 4401,
  /** §2, §5.3: credentials for another session or execution, or a foreign origin. */
  forbidden: 4403,
  /** §4, §6: an unknown or deleted session on the viewer stream. */
  notFound: 4404,
  /** §9: the wrapper heard nothing for `--silence-timeout-ms` (the wrapper's own close). */
  silence: 4408,
} as const;
/** One of the close codes in {@link CloseCode}. */
export type CloseCode = typeof CloseCode[keyof typeof CloseCode];

/** Close codes the service sends on purpose: when it sent them, they never start a grace (§5.4). */
export const DELIBERATE_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.executionDone,
  CloseCode.replaced,
  CloseCode.unauthorized,
  CloseCode.forbidden,
  CloseCode.notActiveYet,
]);

/**
 * Error codes of the contract, each with the PROTOCOL.md section that gives it: the `error`
 * of an HTTP error body (§1) and the `code` of an ingest `error` frame (§5.2) or of a
 * wrapper's fatal `error` event (§9, §14).
 *
 * @example
 * ```ts
 * import { ErrorCode } from "./protocol.ts";
 * const body = { error: ErrorCode.sessionNotFound, message: "session not found" };
 * ```
 */
export const ErrorCode = {
  /** §1, §10: a body, query or header that fails validation. */
  invalidRequest: "INVALID_REQUEST",
  /** §1, §10: a request body over 64 KiB. */
  payloadTooLarge: "PAYLOAD_TOO_LARGE",
  /** §2: missing or invalid credentials. */
  unauthorized: "UNAUTHORIZED",
  /** §2: credentials for another session, a ticket on a client route, a foreign origin. */
  forbidden: "FORBIDDEN",
  /** §4: `POST /v1/sessions` with an id that exists (or is still being removed). */
  sessionExists: "SESSION_EXISTS",
  /** §4: an unknown or deleted session. */
  sessionNotFound: "SESSION_NOT_FOUND",
  /** §4: an unknown execution, or one of another session. */
  executionNotFound: "EXECUTION_NOT_FOUND",
  /** §4: `ifIdle` while another execution is active. */
  executionInProgress: "EXECUTION_IN_PROGRESS",
  /** §4, §10: `TETHER_MAX_QUEUE` executions already wait. */
  queueFull: "QUEUE_FULL",
  /** §4: an `Idempotency-Key` reused with a different body. */
  idempotencyKeyReused: "IDEMPOTENCY_KEY_REUSED",
  /** §12: input for an execution that has ended (the body carries its `status`). */
  executionEnded: "EXECUTION_ENDED",
  /** §12: input after an accepted `endOfInput`. */
  inputClosed: "INPUT_CLOSED",
  /** §12: `TETHER_MAX_PENDING_INPUTS` inputs accepted and not yet delivered. */
  inputQueueFull: "INPUT_QUEUE_FULL",
  /** §10: no route has this path. */
  notFound: "NOT_FOUND",
  /** §10: a known path with a method it does not take. */
  methodNotAllowed: "METHOD_NOT_ALLOWED",
  /** Not in the contract: a WebSocket route asked without an upgrade (426). */
  upgradeRequired: "UPGRADE_REQUIRED",
  /** Not in the contract: a transaction that kept conflicting (503). */
  busy: "BUSY",
  /** Not in the contract: an unexpected failure (500). */
  internal: "INTERNAL",
  /** §5.2: a frame that is not JSON, not an object, or has missing or invalid fields. */
  invalidFrame: "INVALID_FRAME",
  /** §5.2: a binary frame. */
  binaryNotSupported: "BINARY_NOT_SUPPORTED",
  /** §5.2: a `seq` that skips ahead (the frame carries `expectedSeq`). */
  seqGap: "SEQ_GAP",
  /** §9.2: the agent exited by itself with a code other than 0. */
  agentExit: "AGENT_EXIT",
  /** §9.1: the agent printed nothing for `--idle-timeout-ms`. */
  agentIdleTimeout: "AGENT_IDLE_TIMEOUT",
  /** Not in the contract: the agent command could not be started. */
  agentStartFailed: "AGENT_START_FAILED",
  /** §14: an ACP agent broke the protocol. */
  agentProtocolError: "AGENT_PROTOCOL_ERROR",
} as const;
/** One of the error codes in {@link ErrorCode}. */
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** Fixed error texts of PROTOCOL.md section 7 and 5.4. */
export const ErrorText = {
  heartbeatTimeout: "Execution timeout - no heartbeat received",
  neverConnected: "Execution timeout - wrapper never connected",
  forcedInterrupt: "Interrupted - wrapper did not confirm",
  userInterrupted: "User interrupted",
  wrapperDisconnected: "Wrapper disconnected",
  sessionDeleted: "Session deleted",
  fatalError: "Fatal error",
} as const;

/**
 * Schema of an execution's status (PROTOCOL.md section 3): `pending`, `running`, or one of the
 * terminal statuses `completed`, `failed` and `interrupted`.
 */
export const ExecutionStatus = z.enum(["pending", "running", "completed", "failed", "interrupted"]);
/** An execution's status, as parsed by {@link ExecutionStatus}. */
export type ExecutionStatus = z.infer<typeof ExecutionStatus>;
/**
 * The absorbing statuses (PROTOCOL.md section 3): an execution in one of them never changes
 * status again.
 */
export type TerminalStatus = "completed" | "failed" | "interrupted";

/**
 * True for the absorbing statuses. As a type guard it narrows the status to
 * {@link TerminalStatus}.
 *
 * @example
 * ```ts
 * isTerminal("interrupted"); // true
 * isTerminal("running"); // false
 * ```
 */
export function isTerminal(status: ExecutionStatus): status is TerminalStatus {
  return status === "completed" || status === "failed" || status === "interrupted";
}

/**
 * Cuts a text to {@link MAX_STORED_ERROR_CHARS} code points (never splits a surrogate pair),
 * as an error text is cut before it is stored on an execution (PROTOCOL.md section 1). The
 * event that carried the text keeps it whole.
 *
 * @example
 * ```ts
 * cutErrorText("x".repeat(5000)).length; // 1024
 * ```
 */
export function cutErrorText(text: string): string {
  return cutText(text, MAX_STORED_ERROR_CHARS);
}

/**
 * Cuts a text to `max` code points (never splits a surrogate pair).
 *
 * @example
 * ```ts
 * cutText("a😀b", 2); // "a😀"
 * ```
 */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text; // fewer code units than max: fewer code points too
  const points = Array.from(text);
  return points.length <= max ? text : points.slice(0, max).join("");
}

const jsonByteLength = (value: unknown) =>
  new TextEncoder().encode(JSON.stringify(value) ?? "").length;

// A refinement passes on any truthy result, so the check must be a boolean and the text apart.
const maxJsonBytes = (limit: number, what: string) =>
  [
    (value: unknown) => value === undefined || jsonByteLength(value) <= limit,
    `${what} exceeds ${limit} bytes`,
  ] as const;

/** Schema of a `sessionId` (PROTOCOL.md section 1): a string matching {@link SESSION_ID_RE}. */
export const SessionId = z.string().regex(SESSION_ID_RE, "invalid sessionId");
/**
 * Schema of a `streamEventType` (PROTOCOL.md section 1): a string matching
 * {@link STREAM_EVENT_TYPE_RE}. Reserved names pass here; {@link ClientEventType} refuses them.
 */
export const StreamEventType = z.string().regex(
  STREAM_EVENT_TYPE_RE,
  "invalid streamEventType",
);
/**
 * A {@link StreamEventType} that is not one of the {@link RESERVED_EVENT_TYPES} (PROTOCOL.md
 * section 1): the names a caller may choose, such as the fail route's `streamEventType`.
 */
export const ClientEventType = StreamEventType.refine(
  (t) => !RESERVED_EVENT_TYPES.has(t),
  "streamEventType is reserved for the service",
);

// ---------------------------------------------------------------------------------------
// REST bodies (PROTOCOL.md section 4)

/**
 * Body of `POST /v1/sessions` (PROTOCOL.md section 4): an optional `sessionId` and an optional
 * `metadata` object of at most 16 KiB as JSON. Unknown keys are refused.
 */
export const CreateSessionBody = z.strictObject({
  sessionId: SessionId.optional(),
  metadata: z.record(z.string(), z.unknown()).refine(
    ...maxJsonBytes(16 * 1024, "metadata"),
  ).optional(),
});
/** A parsed {@link CreateSessionBody}. */
export type CreateSessionBody = z.infer<typeof CreateSessionBody>;

/**
 * Longest `callbackUrl` accepted. The URL is kept in the execution record and in every
 * callback deadline, both single KV values (64 KiB), next to an error text of up to 1,024
 * code points; no real endpoint needs more.
 */
export const MAX_CALLBACK_URL_CHARS = 2048;

/** The longest disconnect grace an execution may ask for (PROTOCOL.md 4, `graceMs`). */
export const MAX_EXECUTION_GRACE_MS = 600_000;

/**
 * Body of `POST /v1/sessions/:sid/executions` (PROTOCOL.md section 4), every key optional:
 * `input` (any JSON, at most 32 KiB serialized), `ifIdle`, `graceMs` (1000–600000),
 * `heartbeatTimeoutMs` (10000–3600000) and an http(s) `callbackUrl`. Unknown keys are refused.
 * The callback's address rules are checked apart, by `callbackUrlProblem`.
 */
export const CreateExecutionBody = z.strictObject({
  input: z.unknown().refine(...maxJsonBytes(32 * 1024, "input")).optional(),
  ifIdle: z.boolean().optional(),
  graceMs: z.int().min(1000).max(MAX_EXECUTION_GRACE_MS).optional(),
  heartbeatTimeoutMs: z.int().min(10_000).max(3_600_000).optional(),
  callbackUrl: z.url({ protocol: /^https?$/ }).max(
    MAX_CALLBACK_URL_CHARS,
    `callbackUrl is longer than ${MAX_CALLBACK_URL_CHARS} characters`,
  ).optional(),
});
/**
 * A parsed {@link CreateExecutionBody}. An absent `graceMs` or `heartbeatTimeoutMs` takes the
 * configured default (`TETHER_DISCONNECT_GRACE_MS`, `TETHER_HEARTBEAT_TIMEOUT_MS`, PROTOCOL.md
 * section 8) when the execution is created.
 */
export type CreateExecutionBody = z.infer<typeof CreateExecutionBody>;

/** The header that makes creating an execution or sending an input retryable (PROTOCOL.md 4, 12). */
export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";

/**
 * Response headers of the Durable Streams read path (PROTOCOL.md 6.1).
 *
 * @example
 * ```ts
 * res.headers.get(DurableStreamHeader.nextOffset);
 * ```
 */
export const DurableStreamHeader = {
  /** The offset to read from next. */
  nextOffset: "Stream-Next-Offset",
  /** `true` when the read reached the tail. */
  upToDate: "Stream-Up-To-Date",
  /** Echoed on the next live read (collapses CDN caches). */
  cursor: "Stream-Cursor",
} as const;

/**
 * Schema of an `Idempotency-Key` header value (PROTOCOL.md section 4): 1 to 128 printable
 * ASCII characters.
 */
export const IdempotencyKey = z.string().regex(
  /^[\x20-\x7e]{1,128}$/,
  `invalid ${IDEMPOTENCY_KEY_HEADER}`,
);

/**
 * Body of `POST …/executions/:eid/input` (PROTOCOL.md 12): `data` (any JSON, serialized at
 * most 32 KiB) and/or `endOfInput`; a body with neither gives the agent nothing.
 */
export const InputRequest = z.strictObject({
  data: z.unknown().refine(...maxJsonBytes(32 * 1024, "data")).optional(),
  endOfInput: z.boolean().optional(),
}).refine(
  (body) => body.data !== undefined || body.endOfInput === true,
  "give data, or endOfInput: true, or both",
);
/** A parsed {@link InputRequest}: at least one of `data` and `endOfInput: true`. */
export type InputRequest = z.infer<typeof InputRequest>;

/**
 * `202` answer of an accepted input (PROTOCOL.md section 12): `status` is the execution's when
 * it was accepted.
 */
export const InputAccepted = z.object({
  executionId: z.string(),
  inputId: z.int().min(1),
  status: ExecutionStatus,
}).meta({ id: "InputAccepted" });
/** A parsed {@link InputAccepted}. */
export type InputAccepted = z.infer<typeof InputAccepted>;

/**
 * Body of `POST …/executions/:eid/interrupt` (PROTOCOL.md section 4): an optional `reason`.
 * Without one the reason is `User interrupted` (section 7).
 */
export const InterruptBody = z.strictObject({ reason: z.string().optional() });
/**
 * Body of `POST …/executions/:eid/fail` (PROTOCOL.md section 4): the `error` text and an
 * optional `streamEventType` for the failure event (default `error`; a reserved name is
 * refused).
 */
export const FailBody = z.strictObject({
  error: z.string(),
  streamEventType: ClientEventType.optional(),
});
/**
 * Body of `POST /v1/sessions/:sid/tickets` (PROTOCOL.md section 2): an optional `ttlMs` from
 * 1000 to 86400000; without it `TETHER_TICKET_TTL_MS` applies.
 */
export const TicketBody = z.strictObject({ ttlMs: z.int().min(1000).max(86_400_000).optional() });

const commaList = z.string().transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean));
const cursor = z.string().regex(/^\d{1,15}$/, "must be a non-negative integer").transform(Number);

/**
 * Query of `GET /v1/sessions/:sid/executions` (PROTOCOL.md section 4): `limit` (1–1000,
 * default 100) and `after`, an executionId of the session to list after.
 */
export const ListExecutionsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  after: z.string().optional(),
});
/**
 * Query of the JSON events page `GET /v1/sessions/:sid/events` (PROTOCOL.md section 4): the
 * `after` cursor (`fromId` is its alias, section 6), `limit` (1–1000, default 100), the
 * comma-separated filters `executionIds` and `eventTypes`, and a viewer's `ticket` (section 2).
 */
export const EventsQuery = z.object({
  after: cursor.optional(),
  fromId: cursor.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  executionIds: commaList.optional(),
  eventTypes: commaList.optional(),
  ticket: z.string().optional(),
});
/** A parsed {@link EventsQuery}: cursors as numbers, filters as lists of names. */
export type EventsQuery = z.infer<typeof EventsQuery>;

/**
 * Query of the live viewer streams, WebSocket and SSE (PROTOCOL.md 6): the events query
 * without the JSON page's `limit`, which a stream ignores rather than refusing it.
 */
export const StreamQuery = EventsQuery.omit({ limit: true });
/** A parsed {@link StreamQuery}. */
export type StreamQuery = z.infer<typeof StreamQuery>;

/** Query of the Durable Streams read route (PROTOCOL.md 6.1). */
export const DsQuery = z.object({
  offset: z.string().optional().describe("opaque offset; -1 = the start, now = the tail"),
  live: z.enum(["long-poll", "sse"], "live must be long-poll or sse").optional(),
  cursor: z.string().optional().describe("the Stream-Cursor of the previous live read"),
  timeout: z.string().regex(/^\d{1,6}$/, "timeout must be whole seconds").transform(Number)
    .optional().describe("seconds; shortens a live read"),
  ticket: z.string().optional(),
});
/** A parsed {@link DsQuery}: `timeout` as a number of seconds. */
export type DsQuery = z.infer<typeof DsQuery>;

// ---------------------------------------------------------------------------------------
// Records as the API returns them

/**
 * Schema of an execution's `health` (PROTOCOL.md section 4): `null` unless the execution is
 * `running`; then `disconnected`, `stale` or `healthy`.
 */
export const Health = z.enum(["healthy", "stale", "disconnected"]).nullable();
/** An execution's `health`, as parsed by {@link Health}. */
export type Health = z.infer<typeof Health>;

const isoTime = z.iso.datetime({ offset: true });

/** An execution as `GET …/executions/:eid` returns it (PROTOCOL.md 4). */
export const ExecutionView = z.object({
  executionId: z.string(),
  sessionId: z.string(),
  status: ExecutionStatus,
  active: z.boolean(),
  input: z.unknown(),
  graceMs: z.int(),
  heartbeatTimeoutMs: z.int(),
  createdAt: isoTime,
  activatedAt: isoTime.optional(),
  startedAt: isoTime.optional(),
  completedAt: isoTime.optional(),
  lastHeartbeatAt: isoTime.optional(),
  error: z.string().optional(),
  health: Health.describe("null unless running"),
  lastInputId: z.int().min(0).describe("highest inputId accepted (0: never sent input)"),
  deliveredInputId: z.int().min(0).describe("highest inputId written to the agent"),
  inputClosed: z.boolean().describe("true once an endOfInput was accepted"),
}).meta({ id: "Execution" });
/** An execution as the API returns it, parsed by {@link ExecutionView}. */
export type ExecutionView = z.infer<typeof ExecutionView>;

/** One stored event as viewers receive it (PROTOCOL.md 6). */
export const Envelope = z.object({
  eventId: z.int().min(1),
  executionId: z.string(),
  sessionId: z.string(),
  streamEventType: z.string(),
  timestamp: z.string().describe("ISO-8601: the wrapper's frame timestamp or the service's clock"),
  data: z.unknown(),
}).meta({ id: "Envelope" });
/** One stored event as viewers receive it, parsed by {@link Envelope}. */
export type Envelope = z.infer<typeof Envelope>;

// ---------------------------------------------------------------------------------------
// Response bodies (PROTOCOL.md 1, 2 and 4): each one named, so the OpenAPI document
// (src/openapi.ts) and the client (client/mod.ts) share them with the routes.

/** Every error code an HTTP route answers with (PROTOCOL.md 1, 2, 4, 10, 12). */
export const ApiErrorCode = z.enum([
  ErrorCode.invalidRequest,
  ErrorCode.unauthorized,
  ErrorCode.forbidden,
  ErrorCode.notFound,
  ErrorCode.methodNotAllowed,
  ErrorCode.payloadTooLarge,
  ErrorCode.upgradeRequired,
  ErrorCode.sessionNotFound,
  ErrorCode.sessionExists,
  ErrorCode.executionNotFound,
  ErrorCode.executionInProgress,
  ErrorCode.queueFull,
  ErrorCode.idempotencyKeyReused,
  ErrorCode.executionEnded,
  ErrorCode.inputClosed,
  ErrorCode.inputQueueFull,
  ErrorCode.busy,
  ErrorCode.internal,
]);
/** An error code an HTTP route may answer with (see {@link ApiErrorCode}). */
export type ApiErrorCode = z.infer<typeof ApiErrorCode>;

/** The error body of PROTOCOL.md 1: `{error, message, ...details}`. */
export const ErrorBody = z.looseObject({
  error: ApiErrorCode,
  message: z.string(),
  issues: z.array(z.looseObject({
    path: z.array(z.union([z.string(), z.number()])).optional(),
    message: z.string(),
  })).optional().describe("INVALID_REQUEST: what failed validation"),
  activeExecutionId: z.string().optional().describe("EXECUTION_IN_PROGRESS: the active one"),
  status: ExecutionStatus.optional().describe("EXECUTION_ENDED: the execution's status"),
}).meta({ id: "Error" });
/** A parsed {@link ErrorBody}; extra detail keys are kept. */
export type ErrorBody = z.infer<typeof ErrorBody>;

/** `201` of `POST /v1/sessions` (PROTOCOL.md section 4). */
export const SessionCreated = z.object({
  sessionId: z.string(),
  createdAt: isoTime,
  metadata: z.record(z.string(), z.unknown()),
}).meta({ id: "SessionCreated" });
/** A parsed {@link SessionCreated}. */
export type SessionCreated = z.infer<typeof SessionCreated>;

/** `200` of `GET /v1/sessions/:sid` (PROTOCOL.md section 4). */
export const SessionView = z.object({
  sessionId: z.string(),
  createdAt: isoTime,
  metadata: z.record(z.string(), z.unknown()),
  activeExecutionId: z.string().nullable().describe("null when idle"),
  queuedExecutionIds: z.array(z.string()),
  lastEventId: z.int().min(0).describe("0 for a new id"),
}).meta({ id: "Session" });
/** A parsed {@link SessionView}. */
export type SessionView = z.infer<typeof SessionView>;

/**
 * `201` of `POST /v1/sessions/:sid/executions` (PROTOCOL.md section 4); an idempotent retry
 * gets the same body, `ingestToken` included.
 */
export const ExecutionCreated = z.object({
  executionId: z.string(),
  sessionId: z.string(),
  status: z.literal("pending"),
  active: z.boolean(),
  queuePosition: z.int().min(0).describe("0 when active"),
  ingestToken: z.string().describe("the wrapper's credential for this execution"),
  ingestUrl: z.string().describe("ws(s) URL of the execution's ingest WebSocket"),
  streamUrl: z.string().describe("ws(s) URL of the session's viewer WebSocket"),
}).meta({ id: "ExecutionCreated" });
/** A parsed {@link ExecutionCreated}. */
export type ExecutionCreated = z.infer<typeof ExecutionCreated>;

/** `200` of `GET /v1/sessions/:sid/executions`, oldest first (PROTOCOL.md section 4). */
export const ExecutionList = z.object({ executions: z.array(ExecutionView) }).meta({
  id: "ExecutionList",
});
/** A parsed {@link ExecutionList}. */
export type ExecutionList = z.infer<typeof ExecutionList>;

/** `202` of the interrupt route (PROTOCOL.md section 4). */
export const InterruptAccepted = z.object({
  executionId: z.string(),
  status: ExecutionStatus.describe("the status after the call"),
}).meta({ id: "InterruptAccepted" });
/** A parsed {@link InterruptAccepted}. */
export type InterruptAccepted = z.infer<typeof InterruptAccepted>;

/** `200` of the fail route (PROTOCOL.md section 4). */
export const FailResult = z.object({
  failed: z.boolean().describe("false when the execution was already terminal"),
}).meta({ id: "FailResult" });
/** A parsed {@link FailResult}. */
export type FailResult = z.infer<typeof FailResult>;

/**
 * `200` of `GET /v1/sessions/:sid/events` as JSON (PROTOCOL.md section 4): the read is complete
 * when `nextAfter` reaches `lastEventId`.
 */
export const EventsPage = z.object({
  events: z.array(Envelope),
  lastEventId: z.int().min(0).describe("the session's newest eventId"),
  nextAfter: z.int().min(0).describe("the cursor to continue from"),
}).meta({ id: "EventsPage" });
/** A parsed {@link EventsPage}. */
export type EventsPage = z.infer<typeof EventsPage>;

/** `201` of `POST /v1/sessions/:sid/tickets` (PROTOCOL.md section 2). */
export const TicketCreated = z.object({ ticket: z.string(), expiresAt: isoTime }).meta({
  id: "TicketCreated",
});
/** A parsed {@link TicketCreated}. */
export type TicketCreated = z.infer<typeof TicketCreated>;

/** `data` of an `execution_status` event (PROTOCOL.md section 7). */
export interface ExecutionStatusData {
  status: ExecutionStatus;
  previousStatus: ExecutionStatus | null;
  active: boolean;
  error?: string;
}

/** `data` of the service's `input` event (PROTOCOL.md 12): keys absent when not given. */
export interface InputEventData {
  inputId: number;
  data?: unknown;
  endOfInput?: true;
}

/**
 * `data` of the `wrapper_disconnected` event (PROTOCOL.md section 5.4): the legacy keys must
 * stay.
 */
export interface WrapperDisconnectedData {
  error: string;
  fatal: true;
  reason: string;
  wsCloseCode: number;
  wsCloseReason: string;
}

/** Body POSTed to an execution's `callbackUrl` when it ends (PROTOCOL.md section 4). */
export interface CallbackBody {
  sessionId: string;
  executionId: string;
  status: TerminalStatus;
  error?: string;
  completedAt: string;
}

// ---------------------------------------------------------------------------------------
// Ingest frames (PROTOCOL.md section 5)

// Frames from the wrapper: their rules and one classifier are in `src/frames.ts`.
/**
 * `data` of the wrapper's `input_delivered` frame (PROTOCOL.md section 12): inputs up to
 * `inputId` were written.
 */
export const InputDeliveredData = z.strictObject({
  inputId: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
});
/** A parsed {@link InputDeliveredData}. */
export type InputDeliveredData = z.infer<typeof InputDeliveredData>;

/**
 * The `hello` frame the service sends first on an admitted ingest connection (PROTOCOL.md
 * section 5): `lastSeq` is the highest durable `seq` (0 if none), then the execution's
 * `graceMs`, the frame size and in-flight limits, and `deliveredInputId` (section 12).
 */
export const HelloFrame = z.object({
  type: z.literal("hello"),
  executionId: z.string(),
  lastSeq: z.int().min(0),
  graceMs: z.int(),
  maxFrameBytes: z.int().min(1),
  maxInFlight: z.int().min(1),
  /** Highest inputId the wrapper confirmed (section 12); inputs up to it are never written. */
  deliveredInputId: z.int().min(0),
});
/** A parsed {@link HelloFrame}. */
export type HelloFrame = z.infer<typeof HelloFrame>;
/**
 * The `ack` frame (PROTOCOL.md section 5.1): every wrapper frame with a `seq` up to this one is
 * stored, or was refused with an error frame naming its seq.
 */
export const AckFrame = z.object({ type: z.literal("ack"), seq: z.int().min(0) });
/**
 * The `kill` frame (PROTOCOL.md section 5.2): stop the agent. This service always asks for
 * `SIGTERM`, which is also the default when `signal` is absent; other senders may ask for
 * `SIGKILL`.
 */
export const KillFrame = z.object({
  type: z.literal("kill"),
  signal: z.enum(["SIGTERM", "SIGKILL"]).default("SIGTERM"),
  reason: z.string().optional(),
});
/**
 * The `ping` frame (PROTOCOL.md section 5.2), sent on a connection the service has sent nothing
 * to for `TETHER_PING_MS`; the wrapper answers with a `pong` frame.
 */
export const PingFrame = z.object({ type: z.literal("ping") });
/** An input for the agent (section 12), sent for every inputId above `deliveredInputId`. */
export const InputFrame = z.object({
  type: z.literal(InputEventType.input),
  inputId: z.int().min(1),
  data: z.unknown().optional(),
  endOfInput: z.boolean().optional(),
});
/** A parsed {@link InputFrame}. */
export type InputFrame = z.infer<typeof InputFrame>;
/**
 * The `error` frame for a refused wrapper frame (PROTOCOL.md section 5.2): `code` is
 * `INVALID_FRAME`, `BINARY_NOT_SUPPORTED` or `SEQ_GAP` (with `expectedSeq`). The refused frame
 * is not stored and the socket stays open.
 */
export const ServiceErrorFrame = z.object({
  type: z.literal("error"),
  code: z.string(),
  message: z.string(),
  seq: z.int().optional(),
  expectedSeq: z.int().optional(),
});

/** Any frame the service sends on an ingest socket. */
export const ServiceFrame = z.discriminatedUnion("type", [
  HelloFrame,
  AckFrame,
  KillFrame,
  PingFrame,
  ServiceErrorFrame,
  InputFrame,
]);
/** A parsed {@link ServiceFrame}, narrowed by its `type`. */
export type ServiceFrame = z.infer<typeof ServiceFrame>;
/** A parsed {@link KillFrame}: `signal` is always set. */
export type KillFrame = z.infer<typeof KillFrame>;
/** A parsed {@link ServiceErrorFrame}. */
export type ServiceErrorFrame = z.infer<typeof ServiceErrorFrame>;

/**
 * The reason text of the 4000 close (PROTOCOL.md section 5): `execution <status>`. The wrapper
 * takes its exit code from it (section 9.2).
 *
 * @example
 * ```ts
 * socket.close(CloseCode.executionDone, executionDoneReason("failed")); // "execution failed"
 * ```
 */
export function executionDoneReason(status: TerminalStatus): string {
  return `execution ${status}`;
}

/**
 * Reads the status back from a 4000 close reason, or `undefined` for any other text.
 *
 * @example
 * ```ts
 * parseExecutionDoneReason("execution completed"); // "completed"
 * parseExecutionDoneReason("replaced"); // undefined
 * ```
 */
export function parseExecutionDoneReason(reason: string): TerminalStatus | undefined {
  const m = /^execution (completed|failed|interrupted)$/.exec(reason);
  return m ? (m[1] as TerminalStatus) : undefined;
}

/**
 * Parses an `X-Tether-Dial` header, `<wrapperId>/<n>` (PROTOCOL.md sections 5 and 9.3);
 * `undefined` for a missing or malformed one, which admission treats as a dial of its own
 * unknown wrapper.
 *
 * @example
 * ```ts
 * parseDialHeader("w_3f9a/2"); // { wrapperId: "w_3f9a", n: 2 }
 * parseDialHeader("w_3f9a/0"); // undefined: n starts at 1
 * ```
 */
export function parseDialHeader(
  header: string | null | undefined,
): { wrapperId: string; n: number } | undefined {
  if (!header) return undefined;
  const slash = header.lastIndexOf("/");
  const wrapperId = header.slice(0, slash);
  const nText = header.slice(slash + 1);
  if (slash < 0 || !WRAPPER_ID_RE.test(wrapperId) || !/^[1-9]\d{0,15}$/.test(nText)) {
    return undefined;
  }
  const n = Number(nText);
  return Number.isSafeInteger(n) ? { wrapperId, n } : undefined;
}

// ---------------------------------------------------------------------------------------
// ACP agents (PROTOCOL.md section 14): the wrapper's `--acp` frames

/** Event types the wrapper stores for an ACP agent (PROTOCOL.md section 14). */
export const AcpEventType = {
  /** One `session/update` notification; data = its `update` object. */
  update: "acp",
  /** The end of one prompt's turn: `{inputId, stopReason}`. */
  turn: "acp_turn",
  /** A `session/request_permission` waiting for an answer: `{requestId, toolCall, options}`. */
  permissionRequest: "permission_request",
  /** An input that is neither a prompt nor a permission answer: `{inputId, data?, reason}`. */
  inputIgnored: "acp_input_ignored",
} as const;
