/**
 * The shapes of Tether's KV records. Only src/store reads and writes them by key; the rest
 * of the service sees these types.
 *
 * @module
 */
import type { CallbackBody, ExecutionStatus } from "../protocol.ts";

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
  /** Highest inputId accepted (PROTOCOL.md 12); absent in records written before inputs: 0. */
  lastInputId?: number;
  /** Highest inputId the wrapper confirmed; absent: 0. */
  deliveredInputId?: number;
  /** Set once an `endOfInput` was accepted; absent: false. */
  inputClosed?: boolean;
}

/** An accepted input, kept until the session is removed so every `hello` can resend it. */
export interface AgentInputRecord {
  inputId: number;
  data?: unknown;
  endOfInput?: true;
}

/** The session's active slot: the one execution that may run now (PROTOCOL.md section 3). */
export interface ActiveSlot {
  executionId: string;
}

/** The executions waiting behind the active one, oldest first. */
export interface QueueRecord {
  executionIds: string[];
}

/**
 * A pending interrupt of the running execution it names (PROTOCOL.md section 8): the first
 * interrupt's reason and time stay until that execution ends.
 */
export interface InterruptFlag {
  executionId: string;
  reason: string;
  /** ms since epoch when the first interrupt arrived. */
  at: number;
}

/**
 * A disconnect grace in progress (PROTOCOL.md section 5.4): which connection of which
 * execution closed, when, and with what close code and reason.
 */
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

/** A stored response (an execution's creation, an input), for Idempotency-Key retries. */
export interface IdempotencyRecord {
  requestHash: string;
  executionId: string;
  /** The success body (a creation's without the token: it is derived again, never stored). */
  body: Record<string, unknown>;
}

/** Deadline kinds whose only subject is an execution. */
export type ExecutionTimerKind = "grace" | "heartbeat" | "pending" | "interrupt";

/**
 * A durable deadline, as stored under `["timer", dueAt, kind, id]`: each kind carries exactly
 * its own fields. (The shape is the one stored since the first release; the fixture
 * `tests/fixtures/timers_v1.kv` holds one of each.)
 */
export type TimerRecord =
  | {
    kind: ExecutionTimerKind;
    /** The execution. */
    id: string;
    dueAt: number;
  }
  | {
    kind: "ttl" | "purge";
    /** The session. */
    id: string;
    dueAt: number;
    /** Session incarnation: a session re-created under the same id is not affected. */
    incarnation: string;
  }
  | {
    kind: "callback";
    /** The execution that ended. */
    id: string;
    dueAt: number;
    /** Try number, from 1. */
    attempt: number;
    /**
     * Where to POST and what, frozen when the execution ended, so a retry needs no record
     * that a session purge may have removed meanwhile.
     */
    callback: CallbackTarget;
  };

/** A completion callback's destination and body. */
export interface CallbackTarget {
  url: string;
  body: CallbackBody;
}

/** The fields a deadline of kind `K` carries besides kind, id and due time. */
export type TimerFields<K extends TimerRecord["kind"]> = TimerRecord extends infer R
  ? R extends { kind: infer Kinds } ? K extends Kinds ? Omit<R, "kind" | "id" | "dueAt"> : never
  : never
  : never;

/** A message for the instance that holds a socket. */
export type InboxMessage =
  | { type: "close"; connectionId: string; code: number; reason: string }
  | { type: "kill"; connectionId: string; reason: string }
  /** New inputs were accepted: the holder sends what it has not sent yet. */
  | { type: "input"; connectionId: string };
