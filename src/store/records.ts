/**
 * The shapes of Tether's KV records. Only src/store reads and writes them by key; the rest
 * of the service sees these types.
 *
 * @module
 */
import type { CallbackBody, ExecutionCreated, ExecutionStatus } from "../protocol.ts";

/** A session. `deletedAt` marks a tombstone whose data is still being removed. */
export interface SessionRecord {
  sessionId: string;
  createdAt: string;
  metadata: Record<string, unknown>;
  /** Random per creation: tickets name it, so a re-created session voids old tickets. */
  incarnation: string;
  deletedAt?: string;
}

/**
 * Whether a session record is a live session: it exists and is not a tombstone.
 *
 * @example
 * ```ts
 * isLive({ sessionId: "s", createdAt: "", metadata: {}, incarnation: "i" }); // true
 * isLive(null); // false
 * ```
 */
export function isLive(session: SessionRecord | null | undefined): session is SessionRecord {
  return !!session && !session.deletedAt;
}

/** The session's event counter; it outlives deletion so eventIds are never reused. */
export interface HeadRecord {
  lastEventId: number;
  /** Time of the newest event (ms), for the session TTL. */
  lastEventAt: number;
}

/** An execution, without its input (stored once, apart, so hot writes stay small). */
export interface ExecutionRecord {
  executionId: string;
  sessionId: string;
  status: ExecutionStatus;
  graceMs: number;
  heartbeatTimeoutMs: number;
  callbackUrl?: string;
  createdAt: string;
  activatedAt?: string;
  startedAt?: string;
  completedAt?: string;
  /** ms since epoch; refreshed by admission and frames, debounced. */
  lastHeartbeatAt?: number;
  error?: string;
  /** Highest durably stored frame seq. */
  lastSeq: number;
  tokenHash: string;
}

export interface ActiveSlot {
  executionId: string;
}

export interface QueueRecord {
  executionIds: string[];
}

export interface InterruptFlag {
  executionId: string;
  reason: string;
  /** ms since epoch when the first interrupt arrived. */
  at: number;
}

export interface GraceRecord {
  executionId: string;
  connectionId: string;
  disconnectedAt: string;
  wsCloseCode: number;
  wsCloseReason: string;
}

/** The execution's current ingest connection, owned in KV (not in any instance's memory). */
export interface ConnRecord {
  connectionId: string;
  instanceId: string;
  since: string;
  wrapperId?: string;
  dialN?: number;
}

/** A stored creation response, for Idempotency-Key retries. */
export interface IdempotencyRecord {
  requestHash: string;
  executionId: string;
  /** The 201 body without the token (the token is derived again, never stored). */
  body: Omit<ExecutionCreated, "ingestToken">;
}

/** A durable deadline. */
export interface TimerRecord {
  kind: import("./keys.ts").TimerKind;
  /** Execution id, or session id for `ttl` and `purge`. */
  id: string;
  dueAt: number;
  /** Try number for `callback`. */
  attempt?: number;
  /** Session incarnation for `ttl` and `purge`: a re-created session is not affected. */
  incarnation?: string;
  /**
   * For `callback`: where to POST and what, frozen when the execution ended, so a retry
   * needs no record that a session purge may have removed meanwhile.
   */
  callback?: { url: string; body: CallbackBody };
}

/** A message for the instance that holds a socket. */
export type InboxMessage =
  | { type: "close"; connectionId: string; code: number; reason: string }
  | { type: "kill"; connectionId: string; reason: string };
