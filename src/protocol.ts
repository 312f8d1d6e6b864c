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

/** Event types only the service may emit. */
export const RESERVED_EVENT_TYPES: ReadonlySet<string> = new Set([
  "execution_status",
  "wrapper_disconnected",
]);

/** Liveness-only frame types: never stored, never broadcast, never carry `seq`. */
export const LIVENESS_EVENT_TYPES: ReadonlySet<string> = new Set(["heartbeat", "pong"]);

/** Longest error text kept on a record (in Unicode code points). */
export const MAX_STORED_ERROR_CHARS = 1024;

/** WebSocket close codes of the contract (PROTOCOL.md 5.3). */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  abnormal: 1006,
  policy: 1008,
  tooBig: 1009,
  internalError: 1011,
  restart: 1012,
  tryAgainLater: 1013,
  executionDone: 4000,
  replaced: 4001,
  notActiveYet: 4009,
  unauthorized: 4401,
  forbidden: 4403,
  notFound: 4404,
  silence: 4408,
} as const;

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

export const ExecutionStatus = z.enum(["pending", "running", "completed", "failed", "interrupted"]);
export type ExecutionStatus = z.infer<typeof ExecutionStatus>;
export type TerminalStatus = "completed" | "failed" | "interrupted";

/** True for the absorbing statuses. */
export function isTerminal(status: ExecutionStatus): status is TerminalStatus {
  return status === "completed" || status === "failed" || status === "interrupted";
}

/** Cuts a text to {@link MAX_STORED_ERROR_CHARS} code points (never splits a surrogate pair). */
export function cutErrorText(text: string): string {
  const points = Array.from(text);
  return points.length <= MAX_STORED_ERROR_CHARS
    ? text
    : points.slice(0, MAX_STORED_ERROR_CHARS).join("");
}

const jsonByteLength = (value: unknown) =>
  new TextEncoder().encode(JSON.stringify(value) ?? "").length;

// A refinement passes on any truthy result, so the check must be a boolean and the text apart.
const maxJsonBytes = (limit: number, what: string) =>
  [
    (value: unknown) => value === undefined || jsonByteLength(value) <= limit,
    `${what} exceeds ${limit} bytes`,
  ] as const;

export const SessionId = z.string().regex(SESSION_ID_RE, "invalid sessionId");
export const StreamEventType = z.string().regex(
  STREAM_EVENT_TYPE_RE,
  "invalid streamEventType",
);
export const ClientEventType = StreamEventType.refine(
  (t) => !RESERVED_EVENT_TYPES.has(t),
  "streamEventType is reserved for the service",
);

// ---------------------------------------------------------------------------------------
// REST bodies (PROTOCOL.md section 4)

export const CreateSessionBody = z.strictObject({
  sessionId: SessionId.optional(),
  metadata: z.record(z.string(), z.unknown()).refine(
    ...maxJsonBytes(16 * 1024, "metadata"),
  ).optional(),
});
export type CreateSessionBody = z.infer<typeof CreateSessionBody>;

export const CreateExecutionBody = z.strictObject({
  input: z.unknown().refine(...maxJsonBytes(32 * 1024, "input")).optional(),
  ifIdle: z.boolean().optional(),
  graceMs: z.int().min(1000).max(600_000).optional(),
  heartbeatTimeoutMs: z.int().min(10_000).max(3_600_000).optional(),
  callbackUrl: z.url({ protocol: /^https?$/ }).optional(),
});
export type CreateExecutionBody = z.infer<typeof CreateExecutionBody>;

export const IdempotencyKey = z.string().regex(/^[\x20-\x7e]{1,128}$/, "invalid Idempotency-Key");

export const InterruptBody = z.strictObject({ reason: z.string().optional() });
export const FailBody = z.strictObject({
  error: z.string(),
  streamEventType: ClientEventType.optional(),
});
export const TicketBody = z.strictObject({ ttlMs: z.int().min(1000).max(86_400_000).optional() });

const commaList = z.string().transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean));
const cursor = z.string().regex(/^\d{1,15}$/, "must be a non-negative integer").transform(Number);

export const ListExecutionsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  after: z.string().optional(),
});
export const EventsQuery = z.object({
  after: cursor.optional(),
  fromId: cursor.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  executionIds: commaList.optional(),
  eventTypes: commaList.optional(),
  ticket: z.string().optional(),
});
export type EventsQuery = z.infer<typeof EventsQuery>;

// ---------------------------------------------------------------------------------------
// Records as the API returns them

export type Health = "healthy" | "stale" | "disconnected" | null;

/** An execution as `GET …/executions/:eid` returns it. */
export interface ExecutionView {
  executionId: string;
  sessionId: string;
  status: ExecutionStatus;
  active: boolean;
  input: unknown;
  graceMs: number;
  heartbeatTimeoutMs: number;
  createdAt: string;
  activatedAt?: string;
  startedAt?: string;
  completedAt?: string;
  lastHeartbeatAt?: string;
  error?: string;
  health: Health;
}

/** One stored event as viewers receive it (PROTOCOL.md 6). */
export interface Envelope {
  eventId: number;
  executionId: string;
  sessionId: string;
  streamEventType: string;
  timestamp: string;
  data: unknown;
}

/** `data` of an `execution_status` event. */
export interface ExecutionStatusData {
  status: ExecutionStatus;
  previousStatus: ExecutionStatus | null;
  active: boolean;
  error?: string;
}

/** `data` of the `wrapper_disconnected` event: the legacy keys must stay. */
export interface WrapperDisconnectedData {
  error: string;
  fatal: true;
  reason: string;
  wsCloseCode: number;
  wsCloseReason: string;
}

/** Body POSTed to an execution's `callbackUrl` when it ends. */
export interface CallbackBody {
  sessionId: string;
  executionId: string;
  status: TerminalStatus;
  error?: string;
  completedAt: string;
}

// ---------------------------------------------------------------------------------------
// Ingest frames (PROTOCOL.md section 5)

// Frames from the wrapper: their rules and classifier are in `src/frames.ts`.

export const HelloFrame = z.object({
  type: z.literal("hello"),
  executionId: z.string(),
  lastSeq: z.int().min(0),
  graceMs: z.int(),
  maxFrameBytes: z.int().min(1),
  maxInFlight: z.int().min(1),
});
export type HelloFrame = z.infer<typeof HelloFrame>;
export const AckFrame = z.object({ type: z.literal("ack"), seq: z.int().min(0) });
export const KillFrame = z.object({
  type: z.literal("kill"),
  signal: z.enum(["SIGTERM", "SIGKILL"]).default("SIGTERM"),
  reason: z.string().optional(),
});
export const PingFrame = z.object({ type: z.literal("ping") });
export const ErrorCode = z.enum(["INVALID_FRAME", "BINARY_NOT_SUPPORTED", "SEQ_GAP"]);
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
]);
export type ServiceFrame = z.infer<typeof ServiceFrame>;
export type KillFrame = z.infer<typeof KillFrame>;
export type ServiceErrorFrame = z.infer<typeof ServiceErrorFrame>;

/** The reason text of the 4000 close: `execution <status>`. */
export function executionDoneReason(status: TerminalStatus): string {
  return `execution ${status}`;
}

/** Reads the status back from a 4000 close reason, or `undefined`. */
export function parseExecutionDoneReason(reason: string): TerminalStatus | undefined {
  const m = /^execution (completed|failed|interrupted)$/.exec(reason);
  return m ? (m[1] as TerminalStatus) : undefined;
}

/** Parses an `X-Tether-Dial` header; `undefined` for a missing or malformed one. */
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
