/**
 * The execution lifecycle: every state change of sessions and executions, each as one
 * optimistic KV transaction that checks what it read, appends its events, clears the active
 * slot, interrupt flag and grace record only when they name the execution it ends, promotes
 * the next queued execution and arms the deadlines it needs, all in the same commit.
 *
 * Side effects on sockets never happen here: a transition posts inbox messages to the
 * instance that holds a connection (in the same commit) and returns what it stored, and the
 * caller pushes that to local viewers.
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { Credentials } from "./auth.ts";
import {
  newExecutionId,
  newSessionId,
  randomSecret,
  sha256Hex,
  timingSafeEqual,
  tokenExecutionId,
} from "./ids.ts";
import {
  type CallbackBody,
  type CreateExecutionBody,
  cutErrorText,
  ErrorText,
  executionDoneReason,
  type ExecutionStatus,
  type ExecutionStatusData,
  type ExecutionView,
  type Health,
  isTerminal,
  type TerminalStatus,
  type WrapperDisconnectedData,
} from "./protocol.ts";
import {
  type ActiveSlot,
  appendEvents,
  armTimer,
  type ConnRecord,
  type ExecutionRecord,
  type GraceRecord,
  type HeadRecord,
  IDEMPOTENCY_TTL_MS,
  type InterruptFlag,
  listConnections,
  type NewEvent,
  postToInbox,
  type QueueRecord,
  readHead,
  records,
  type SessionRecord,
  type StoredEvent,
  type TimerRecord,
  touchHead,
  transact,
  type Tx,
} from "./store/mod.ts";

/** What transitions need from their surroundings. */
export interface LifecycleContext {
  kv: Deno.Kv;
  config: Config;
  credentials: Credentials;
  /** This instance's id: connections it admits are owned by it. */
  instanceId: string;
  /** Whether commits also enqueue KV queue wake-ups for the deadlines they arm. */
  queues: boolean;
  now: () => number;
}

/** What a committed transition leaves for the caller to do. */
export interface Effects {
  sessionId: string;
  /** Events the commit stored, to push to this instance's viewers. */
  stored: StoredEvent[];
  /** Instances whose inbox got a message (close or kill a connection). */
  notified: Set<string>;
}

/** The events and notifications a transition accumulates before its commit. */
class Pending {
  readonly events: NewEvent[] = [];
  readonly notified = new Set<string>();
  constructor(readonly now: number) {}
  get at(): string {
    return new Date(this.now).toISOString();
  }
}

async function change<T>(
  ctx: LifecycleContext,
  sessionId: string,
  body: (tx: Tx, p: Pending) => Promise<T>,
): Promise<{ result: T; effects: Effects }> {
  return await transact(ctx.kv, async (tx) => {
    const p = new Pending(ctx.now());
    const result = await body(tx, p);
    const stored = await appendEvents(tx, sessionId, p.events, p.now);
    return { result, effects: { sessionId, stored, notified: p.notified } };
  }, { queues: ctx.queues });
}

const strip = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

function statusEvent(
  exec: ExecutionRecord,
  previousStatus: ExecutionStatus | null,
  active: boolean,
  at: string,
): NewEvent {
  const data: ExecutionStatusData = strip({
    status: exec.status,
    previousStatus,
    active,
    error: exec.status === "failed" || exec.status === "interrupted" ? exec.error : undefined,
  });
  return {
    executionId: exec.executionId,
    streamEventType: "execution_status",
    timestamp: at,
    data,
  };
}

const serviceEvent = (
  executionId: string,
  streamEventType: string,
  at: string,
  data: unknown,
): NewEvent => ({
  executionId,
  streamEventType,
  timestamp: at,
  data,
});

// ---------------------------------------------------------------------------------------
// Sessions

export type CreateSessionResult =
  | { ok: true; session: SessionRecord }
  | { ok: false; error: "SESSION_EXISTS" };

/** Creates a session (and arms its TTL); fails when the id exists or is still a tombstone. */
export async function createSession(
  ctx: LifecycleContext,
  input: { sessionId?: string; metadata?: Record<string, unknown> },
): Promise<CreateSessionResult> {
  const sessionId = input.sessionId ?? newSessionId();
  const { result } = await change(ctx, sessionId, async (tx, p) => {
    if (await records.session(sessionId).get(tx)) {
      return { ok: false, error: "SESSION_EXISTS" } as const;
    }
    const session: SessionRecord = {
      sessionId,
      createdAt: p.at,
      metadata: input.metadata ?? {},
      incarnation: randomSecret(12),
    };
    records.session(sessionId).set(tx, session);
    armTimer(tx, "ttl", sessionId, p.now + ctx.config.sessionTtlMs, {
      incarnation: session.incarnation,
    });
    return { ok: true, session } as const;
  });
  return result;
}

/** A live (not deleted) session, or `null`. */
export async function getLiveSession(
  kv: Deno.Kv,
  sessionId: string,
): Promise<SessionRecord | null> {
  const session = await transact(kv, (tx) => records.session(sessionId).get(tx));
  return session && !session.deletedAt ? session : null;
}

/** `GET /v1/sessions/:sid` body, or `null` for an unknown or deleted session. */
export async function sessionView(ctx: LifecycleContext, sessionId: string) {
  return await transact(ctx.kv, async (tx) => {
    // One snapshot: a read-only transaction is not checked at commit, and separate reads
    // could show an execution both active and queued while a promotion commits.
    const [session, active, queue, head] = await tx.getMany<
      [SessionRecord, ActiveSlot, QueueRecord, HeadRecord]
    >([
      records.session(sessionId).key,
      records.active(sessionId).key,
      records.queue(sessionId).key,
      records.head(sessionId).key,
    ]);
    if (!session || session.deletedAt) return null;
    return {
      sessionId,
      createdAt: session.createdAt,
      metadata: session.metadata,
      activeExecutionId: active?.executionId ?? null,
      queuedExecutionIds: queue?.executionIds ?? [],
      lastEventId: head?.lastEventId ?? 0,
    };
  });
}

/**
 * Deletes a session in one commit: a tombstone, every non-terminal execution failed with
 * `Session deleted`, and a `purge` deadline that removes the data in the background.
 * Returns `false` for an unknown or already deleted session.
 */
export async function deleteSession(
  ctx: LifecycleContext,
  sessionId: string,
): Promise<{ deleted: boolean; effects: Effects }> {
  const { result, effects } = await change(
    ctx,
    sessionId,
    (tx, p) => tombstone(ctx, tx, p, sessionId),
  );
  return { deleted: result, effects };
}

async function tombstone(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  sessionId: string,
): Promise<boolean> {
  const session = await records.session(sessionId).get(tx);
  if (!session || session.deletedAt) return false;
  const [active, queue] = await Promise.all([
    records.active(sessionId).get(tx),
    records.queue(sessionId).get(tx),
  ]);
  const live = [...(active ? [active.executionId] : []), ...(queue?.executionIds ?? [])];
  for (const eid of live) {
    const exec = await records.execution(eid).get(tx);
    if (!exec || isTerminal(exec.status)) continue;
    const cause = serviceEvent(eid, "error", p.at, {
      error: ErrorText.sessionDeleted,
      fatal: true,
    });
    await finish(ctx, tx, p, exec, "failed", ErrorText.sessionDeleted, [cause], { promote: false });
  }
  for (const entry of [records.active, records.queue, records.interrupt, records.grace]) {
    entry(sessionId).delete(tx);
  }
  records.session(sessionId).set(tx, { ...session, deletedAt: p.at });
  await touchHead(tx, sessionId);
  armTimer(tx, "purge", sessionId, p.now, { incarnation: session.incarnation });
  return true;
}

// ---------------------------------------------------------------------------------------
// Executions

/** Everything the 201 body of a creation needs besides the stored record. */
export interface CreationUrls {
  ingestUrl: (executionId: string) => string;
  streamUrl: string;
}

export type CreateExecutionResult =
  | { ok: true; body: Record<string, unknown> }
  | { ok: false; status: 404; error: "SESSION_NOT_FOUND" }
  | { ok: false; status: 409; error: "EXECUTION_IN_PROGRESS"; activeExecutionId: string }
  | { ok: false; status: 429; error: "QUEUE_FULL" }
  | { ok: false; status: 422; error: "IDEMPOTENCY_KEY_REUSED" };

/**
 * Creates an execution: active at once on an idle session (arming the pending-start
 * deadline), else queued FIFO. With an idempotency key, a retry gets the first response.
 */
export async function createExecution(
  ctx: LifecycleContext,
  sessionId: string,
  body: CreateExecutionBody,
  urls: CreationUrls,
  idempotencyKey?: string,
): Promise<{ result: CreateExecutionResult; effects: Effects }> {
  const requestHash = await sha256Hex(canonicalJson(body));
  const executionId = newExecutionId();
  const token = await ctx.credentials.ingestToken(executionId);
  const tokenHash = await sha256Hex(token);
  const { result, effects } = await change(
    ctx,
    sessionId,
    async (tx, p): Promise<CreateExecutionResult> => {
      const session = await records.session(sessionId).get(tx);
      if (!session || session.deletedAt) {
        return {
          ok: false,
          status: 404,
          error: "SESSION_NOT_FOUND",
        };
      }
      if (idempotencyKey !== undefined) {
        const previous = await records.idempotency(sessionId, idempotencyKey).get(tx);
        if (previous) {
          if (previous.requestHash !== requestHash) {
            return {
              ok: false,
              status: 422,
              error: "IDEMPOTENCY_KEY_REUSED",
            };
          }
          return {
            ok: true,
            body: {
              ...previous.body,
              ingestToken: await ctx.credentials.ingestToken(previous.executionId),
            },
          };
        }
      }
      const [active, queue] = await Promise.all([
        records.active(sessionId).get(tx),
        records.queue(sessionId).get(tx),
      ]);
      if (active && body.ifIdle) {
        return {
          ok: false,
          status: 409,
          error: "EXECUTION_IN_PROGRESS",
          activeExecutionId: active.executionId,
        };
      }
      const waiting = queue?.executionIds ?? [];
      if (active && waiting.length >= ctx.config.maxQueue) {
        return {
          ok: false,
          status: 429,
          error: "QUEUE_FULL",
        };
      }
      const exec: ExecutionRecord = strip({
        executionId,
        sessionId,
        status: "pending",
        graceMs: body.graceMs ?? ctx.config.disconnectGraceMs,
        heartbeatTimeoutMs: body.heartbeatTimeoutMs ?? ctx.config.heartbeatTimeoutMs,
        callbackUrl: body.callbackUrl,
        createdAt: p.at,
        activatedAt: active ? undefined : p.at,
        lastSeq: 0,
        tokenHash,
      });
      records.execution(executionId).set(tx, exec);
      records.input(executionId).set(tx, { input: body.input ?? null });
      records.sessionExecution(sessionId, executionId).set(tx, true);
      if (active) {
        records.queue(sessionId).set(tx, { executionIds: [...waiting, executionId] });
      } else {
        records.active(sessionId).set(tx, { executionId });
        armTimer(tx, "pending", executionId, p.now + ctx.config.pendingTimeoutMs);
      }
      p.events.push(statusEvent(exec, null, !active, p.at));
      const response = {
        executionId,
        sessionId,
        status: "pending",
        active: !active,
        queuePosition: active ? waiting.length + 1 : 0,
        ingestUrl: urls.ingestUrl(executionId),
        streamUrl: urls.streamUrl,
      };
      if (idempotencyKey !== undefined) {
        records.idempotency(sessionId, idempotencyKey).set(
          tx,
          { requestHash, executionId, body: response },
          { expireIn: IDEMPOTENCY_TTL_MS },
        );
      }
      return { ok: true, body: { ...response, ingestToken: token } };
    },
  );
  return { result, effects };
}

/**
 * JSON with object keys sorted at every depth, so a retry that sends the same body with its
 * keys in another order counts as the same body.
 */
function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
        : v,
  );
}

/** The execution as the API shows it, or `null` when it is not of this (live) session. */
export async function executionView(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
): Promise<ExecutionView | null> {
  const views = await executionViews(ctx, sessionId, [executionId]);
  return views[0] ?? null;
}

/** Views of several executions of one session, in the order given (unknown ones skipped). */
export async function executionViews(
  ctx: LifecycleContext,
  sessionId: string,
  executionIds: readonly string[],
): Promise<ExecutionView[]> {
  const now = ctx.now();
  return await transact(ctx.kv, async (tx) => {
    // One getMany: a single view (four keys) is one snapshot, so `active` and `status`
    // agree even while a promotion commits; a page reads in batches, not key by key.
    const values = await tx.getMany<unknown[]>([
      records.active(sessionId).key,
      records.grace(sessionId).key,
      ...executionIds.flatMap((eid) => [records.execution(eid).key, records.input(eid).key]),
    ]);
    const active = values[0] as ActiveSlot | null;
    const grace = values[1] as GraceRecord | null;
    const out: ExecutionView[] = [];
    executionIds.forEach((eid, i) => {
      const exec = values[2 + 2 * i] as ExecutionRecord | null;
      const input = values[3 + 2 * i] as { input: unknown } | null;
      if (!exec || exec.sessionId !== sessionId) return;
      out.push(toView(exec, input?.input ?? null, active?.executionId === eid, grace, now));
    });
    return out;
  });
}

function toView(
  exec: ExecutionRecord,
  input: unknown,
  active: boolean,
  grace: GraceRecord | null,
  now: number,
): ExecutionView {
  return strip({
    executionId: exec.executionId,
    sessionId: exec.sessionId,
    status: exec.status,
    active,
    input,
    graceMs: exec.graceMs,
    heartbeatTimeoutMs: exec.heartbeatTimeoutMs,
    createdAt: exec.createdAt,
    activatedAt: exec.activatedAt,
    startedAt: exec.startedAt,
    completedAt: exec.completedAt,
    lastHeartbeatAt: exec.lastHeartbeatAt === undefined
      ? undefined
      : new Date(exec.lastHeartbeatAt).toISOString(),
    error: exec.error,
    health: health(exec, grace, now),
  });
}

/** `disconnected` over `stale` over `healthy`; `null` unless running. */
export function health(exec: ExecutionRecord, grace: GraceRecord | null, now: number): Health {
  if (exec.status !== "running") return null;
  if (grace?.executionId === exec.executionId) return "disconnected";
  const last = exec.lastHeartbeatAt ?? Date.parse(exec.startedAt ?? exec.createdAt);
  return now - last > exec.heartbeatTimeoutMs / 2 ? "stale" : "healthy";
}

// ---------------------------------------------------------------------------------------
// Ending an execution: the one place that clears the active slot, flag and grace record.

/**
 * Moves `exec` to a terminal status inside the transaction. Appends `cause` events, then its
 * `execution_status`; clears the active slot, interrupt flag, grace record and connection
 * only when they name this execution; promotes the next queued execution (unless the
 * session is being deleted); closes the connection with 4000 wherever it is held; arms the
 * completion callback.
 */
async function finish(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  exec: ExecutionRecord,
  status: TerminalStatus,
  error: string | undefined,
  cause: NewEvent[],
  options: { promote: boolean } = { promote: true },
): Promise<void> {
  const sid = exec.sessionId;
  const eid = exec.executionId;
  const [active, queue, flag, grace, conn] = await Promise.all([
    records.active(sid).get(tx),
    records.queue(sid).get(tx),
    records.interrupt(sid).get(tx),
    records.grace(sid).get(tx),
    // Only a running execution has a connection (admission sets both in one commit). Not
    // reading it otherwise keeps a deletion that ends a long queue under KV's 100 checks.
    exec.status === "running" ? records.conn(eid).get(tx) : null,
  ]);
  const ended: ExecutionRecord = strip({
    ...exec,
    status,
    completedAt: p.at,
    error: error === undefined ? undefined : cutErrorText(error),
  });
  records.execution(eid).set(tx, ended);
  p.events.push(...cause, statusEvent(ended, exec.status, false, p.at));

  const waiting = (queue?.executionIds ?? []).filter((id) => id !== eid);
  if (active?.executionId === eid) {
    records.active(sid).delete(tx);
    if (options.promote && waiting.length > 0) await promote(ctx, tx, p, sid, waiting);
  } else if (waiting.length !== (queue?.executionIds.length ?? 0)) {
    records.queue(sid).set(tx, { executionIds: waiting });
  }
  if (flag?.executionId === eid) records.interrupt(sid).delete(tx);
  if (grace?.executionId === eid) records.grace(sid).delete(tx);
  if (conn) {
    records.conn(eid).delete(tx);
    postToInbox(tx, conn.instanceId, {
      type: "close",
      connectionId: conn.connectionId,
      code: 4000,
      reason: executionDoneReason(status),
    });
    p.notified.add(conn.instanceId);
  }
  if (exec.callbackUrl) {
    const body: CallbackBody = strip({
      sessionId: sid,
      executionId: eid,
      status,
      error: status === "completed" ? undefined : ended.error,
      completedAt: p.at,
    });
    armTimer(tx, "callback", eid, p.now, { attempt: 1, callback: { url: exec.callbackUrl, body } });
  }
}

async function promote(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  sid: string,
  waiting: string[],
): Promise<void> {
  const [nextId, ...rest] = waiting;
  records.queue(sid).set(tx, { executionIds: rest });
  const next = await records.execution(nextId).get(tx);
  if (!next) return;
  const activated: ExecutionRecord = { ...next, activatedAt: p.at };
  records.execution(nextId).set(tx, activated);
  records.active(sid).set(tx, { executionId: nextId });
  armTimer(tx, "pending", nextId, p.now + ctx.config.pendingTimeoutMs);
  p.events.push(statusEvent(activated, "pending", true, p.at));
}

/**
 * Fails an execution with one failure event (`streamEventType`, default `error`, data
 * `{error, fatal: true}` unless `data` is given). Returns `false`, committing nothing, when
 * the execution is unknown or already terminal.
 */
export async function failExecution(
  ctx: LifecycleContext,
  executionId: string,
  failure: { error: string; streamEventType?: string; data?: unknown },
): Promise<{ failed: boolean; effects?: Effects }> {
  const exec = await transact(ctx.kv, (tx) => records.execution(executionId).get(tx));
  if (!exec) return { failed: false };
  const { result, effects } = await change(ctx, exec.sessionId, async (tx, p) => {
    const current = await records.execution(executionId).get(tx);
    if (!current || isTerminal(current.status)) return false;
    const data = failure.data ?? { error: failure.error, fatal: true };
    const cause = serviceEvent(executionId, failure.streamEventType ?? "error", p.at, data);
    await finish(ctx, tx, p, current, "failed", failure.error, [cause]);
    return true;
  });
  return { failed: result, effects };
}

/**
 * Interrupts an execution. Queued or pending: `interrupted` at once. Running: sets the
 * interrupt flag (the first reason and deadline stay), asks the connection's instance to
 * send `kill`, and arms the interrupt deadline. Terminal: unchanged. `null` when unknown.
 */
export async function interruptExecution(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
  reason: string | undefined,
): Promise<{ status: ExecutionStatus; effects: Effects } | null> {
  const whole = reason ?? ErrorText.userInterrupted;
  // The flag (and so the kill frame) and the execution keep the cut text; the `interrupted`
  // event that carries it keeps it whole (PROTOCOL.md 1).
  const text = cutErrorText(whole);
  const { result, effects } = await change(ctx, sessionId, async (tx, p) => {
    const [session, exec] = await Promise.all([
      records.session(sessionId).get(tx),
      records.execution(executionId).get(tx),
    ]);
    if (!session || session.deletedAt || !exec || exec.sessionId !== sessionId) return null;
    if (isTerminal(exec.status)) return exec.status;
    if (exec.status === "pending") {
      const cause = serviceEvent(executionId, "interrupted", p.at, { reason: whole });
      await finish(ctx, tx, p, exec, "interrupted", whole, [cause]);
      return "interrupted" as const;
    }
    const [flag, conn] = await Promise.all([
      records.interrupt(sessionId).get(tx),
      records.conn(executionId).get(tx),
    ]);
    const current = flag?.executionId === executionId ? flag : undefined;
    if (!current) {
      records.interrupt(sessionId).set(
        tx,
        { executionId, reason: text, at: p.now } satisfies InterruptFlag,
      );
      armTimer(tx, "interrupt", executionId, p.now + ctx.config.interruptTimeoutMs);
    }
    if (conn) {
      postToInbox(tx, conn.instanceId, {
        type: "kill",
        connectionId: conn.connectionId,
        reason: current?.reason ?? text,
      });
      p.notified.add(conn.instanceId);
    }
    return exec.status;
  });
  return result === null ? null : { status: result, effects };
}

// ---------------------------------------------------------------------------------------
// Ingest: admission, frames, disconnects

/** A dial as the `X-Tether-Dial` header describes it (absent: an unknown wrapper). */
export interface Dial {
  wrapperId: string;
  n: number;
}

export type Admission =
  | { admitted: false; code: number; reason: string }
  | {
    admitted: true;
    sessionId: string;
    executionId: string;
    lastSeq: number;
    graceMs: number;
    /** The pending interrupt's reason, when a kill must follow `hello`. */
    killReason?: string;
    /** Whether this admission cancelled a disconnect grace (metrics). */
    graceCancelled: boolean;
    effects: Effects;
  };

/**
 * Admits an ingest connection (PROTOCOL.md 5): checks the token, the execution's state and
 * the dial order; makes it the current connection (the previous one, on any instance, gets
 * 4001); cancels a pending grace; `pending → running`.
 */
export async function admitConnection(
  ctx: LifecycleContext,
  path: { sessionId: string; executionId: string },
  token: string | undefined,
  connectionId: string,
  dial: Dial | undefined,
): Promise<Admission> {
  const tokenEid = token ? tokenExecutionId(token) : undefined;
  const tokenHash = token ? await sha256Hex(token) : "";
  const exec0 = tokenEid
    ? await transact(ctx.kv, (tx) => records.execution(tokenEid).get(tx))
    : null;
  if (!exec0) return { admitted: false, code: 4401, reason: "unauthorized" };
  const sid = exec0.sessionId;
  type Decision =
    | Exclude<Admission, { admitted: true }>
    | (Omit<Extract<Admission, { admitted: true }>, "effects">);
  const { result, effects } = await change(ctx, sid, async (tx, p): Promise<Decision> => {
    const [exec, session] = await Promise.all([
      records.execution(exec0.executionId).get(tx),
      records.session(sid).get(tx),
    ]);
    if (!exec || !session || session.deletedAt || !timingSafeEqual(exec.tokenHash, tokenHash)) {
      return { admitted: false, code: 4401, reason: "unauthorized" };
    }
    if (exec.executionId !== path.executionId || sid !== path.sessionId) {
      return { admitted: false, code: 4403, reason: "forbidden" };
    }
    if (isTerminal(exec.status)) {
      return { admitted: false, code: 4000, reason: executionDoneReason(exec.status) };
    }
    const [active, conn, grace, flag] = await Promise.all([
      records.active(sid).get(tx),
      records.conn(exec.executionId).get(tx),
      records.grace(sid).get(tx),
      records.interrupt(sid).get(tx),
    ]);
    if (active?.executionId !== exec.executionId) {
      return { admitted: false, code: 4009, reason: "not active yet" };
    }
    if (conn && dial && conn.wrapperId === dial.wrapperId && (conn.dialN ?? 0) > dial.n) {
      return { admitted: false, code: 4001, reason: "replaced" };
    }
    if (conn) {
      postToInbox(tx, conn.instanceId, {
        type: "close",
        connectionId: conn.connectionId,
        code: 4001,
        reason: "replaced",
      });
      p.notified.add(conn.instanceId);
    }
    records.conn(exec.executionId).set(
      tx,
      strip({
        connectionId,
        instanceId: ctx.instanceId,
        since: p.at,
        wrapperId: dial?.wrapperId,
        dialN: dial?.n,
      }) satisfies ConnRecord,
    );
    const graceCancelled = grace?.executionId === exec.executionId;
    if (graceCancelled) records.grace(sid).delete(tx);
    let updated: ExecutionRecord = { ...exec, lastHeartbeatAt: p.now };
    if (exec.status === "pending") {
      updated = { ...updated, status: "running", startedAt: p.at };
      p.events.push(statusEvent(updated, "pending", true, p.at));
      armTimer(tx, "heartbeat", exec.executionId, p.now + exec.heartbeatTimeoutMs);
    }
    records.execution(exec.executionId).set(tx, updated);
    return {
      admitted: true,
      sessionId: sid,
      executionId: exec.executionId,
      lastSeq: exec.lastSeq,
      graceMs: exec.graceMs,
      killReason: flag?.executionId === exec.executionId ? flag.reason : undefined,
      graceCancelled,
    };
  });
  return result.admitted ? { ...result, effects } : result;
}

/** A frame ready to commit: its seq (if any) and its event, or no event for a rejected frame whose seq it uses up. */
export interface PreparedFrame {
  seq?: number;
  event?: NewEvent;
  /** Set for a terminal frame: what it ends the execution as. */
  terminal?: { status: TerminalStatus; error?: string };
}

export type FrameCommit =
  | { ok: true; lastSeq: number; effects: Effects; status: ExecutionStatus }
  | { ok: false };

/**
 * Commits a batch of frames from the current connection (group commit): stores the new
 * ones in order, skips resends (`seq ≤ lastSeq`), advances `lastSeq`, refreshes liveness
 * (debounced), and applies a terminal frame's transition in the same commit. `ok: false`
 * when the connection is no longer current: nothing is stored.
 */
export async function commitFrames(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
  connectionId: string,
  frames: readonly PreparedFrame[],
): Promise<FrameCommit> {
  const { result, effects } = await change(ctx, sessionId, async (tx, p) => {
    const [exec, conn] = await Promise.all([
      records.execution(executionId).get(tx),
      records.conn(executionId).get(tx),
      // Read with the others (one round trip, not two): appending the events needs it.
      readHead(tx, sessionId),
    ]);
    if (!exec || conn?.connectionId !== connectionId) return null;
    let lastSeq = exec.lastSeq;
    const events: NewEvent[] = [];
    let terminal: PreparedFrame["terminal"];
    for (const frame of frames) {
      if (frame.seq !== undefined) {
        if (frame.seq !== lastSeq + 1) continue; // a resend (or a gap the connection already refused)
        lastSeq = frame.seq;
      }
      if (frame.event) events.push(frame.event);
      if (frame.terminal) terminal = frame.terminal;
    }
    const heartbeatDue = p.now - (exec.lastHeartbeatAt ?? 0) >= ctx.config.heartbeatWriteMs;
    const updated: ExecutionRecord = {
      ...exec,
      lastSeq,
      lastHeartbeatAt: heartbeatDue ? p.now : exec.lastHeartbeatAt,
    };
    if (terminal && exec.status === "running") {
      await finish(ctx, tx, p, updated, terminal.status, terminal.error, events);
      return { lastSeq, status: terminal.status as ExecutionStatus };
    }
    p.events.push(...events);
    if (lastSeq !== exec.lastSeq || heartbeatDue) records.execution(executionId).set(tx, updated);
    return { lastSeq, status: exec.status };
  });
  return result ? { ok: true, ...result, effects } : { ok: false };
}

/** Refreshes `lastHeartbeatAt` for a liveness-only frame, at most once per `heartbeatWriteMs`. */
export async function touchHeartbeat(
  ctx: LifecycleContext,
  executionId: string,
  connectionId: string,
): Promise<void> {
  await transact(ctx.kv, async (tx) => {
    const [exec, conn] = await Promise.all([
      records.execution(executionId).get(tx),
      records.conn(executionId).get(tx),
    ]);
    if (!exec || conn?.connectionId !== connectionId || exec.status !== "running") return;
    const now = ctx.now();
    if (now - (exec.lastHeartbeatAt ?? 0) < ctx.config.heartbeatWriteMs) return;
    records.execution(executionId).set(tx, { ...exec, lastHeartbeatAt: now });
  }, { queues: ctx.queues });
}

/** Close codes the service sends on purpose: they never start a grace. */
const SERVICE_CLOSES = new Set([4000, 4001, 4401, 4403, 4009]);

/**
 * Records that a connection closed. Only when the execution's current connection is this
 * one does anything happen: the connection record is cleared and, for a running execution
 * and a close that is not one of the service's own deliberate ones, a grace record and its
 * deadline are written. Returns whether a grace started.
 */
export async function recordDisconnect(
  ctx: LifecycleContext,
  executionId: string,
  connectionId: string,
  close: { code: number; reason: string },
): Promise<boolean> {
  return await transact(ctx.kv, async (tx) => {
    const [exec, conn] = await Promise.all([
      records.execution(executionId).get(tx),
      records.conn(executionId).get(tx),
    ]);
    if (!exec || conn?.connectionId !== connectionId) return false;
    records.conn(executionId).delete(tx);
    if (exec.status !== "running" || SERVICE_CLOSES.has(close.code)) return false;
    const now = ctx.now();
    records.grace(exec.sessionId).set(tx, {
      executionId,
      connectionId,
      disconnectedAt: new Date(now).toISOString(),
      wsCloseCode: close.code,
      wsCloseReason: close.reason,
    });
    armTimer(tx, "grace", executionId, now + exec.graceMs);
    return true;
  }, { queues: ctx.queues });
}

// ---------------------------------------------------------------------------------------
// Deadlines: each handler re-reads the state and does nothing when it moved on.

/** What firing a deadline did. */
export interface Firing {
  /** A short description for logs and metrics (`failed`, `rearmed`, `noop`, …). */
  outcome: string;
  effects?: Effects;
}

/**
 * Applies a due deadline inside a transaction that also deletes its timer entry (checked),
 * so at most one wake-up has an effect. `callback` and `purge` do I/O and are handled by
 * the timer runner instead.
 */
async function applyDeadline(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  timer: TimerRecord,
): Promise<string> {
  switch (timer.kind) {
    case "grace":
    case "heartbeat":
    case "pending":
    case "interrupt":
      return await executionDeadline(ctx, tx, p, timer);
    case "ttl":
      return await sessionTtl(ctx, tx, p, timer);
    default:
      return "noop";
  }
}

async function executionDeadline(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  timer: TimerRecord,
): Promise<string> {
  const exec = await records.execution(timer.id).get(tx);
  if (!exec || isTerminal(exec.status)) return "noop";
  const sid = exec.sessionId;
  const [flag, grace, active] = await Promise.all([
    records.interrupt(sid).get(tx),
    records.grace(sid).get(tx),
    records.active(sid).get(tx),
  ]);
  const interrupting = flag?.executionId === exec.executionId ? flag : undefined;
  const forced = async () => {
    const cause = serviceEvent(exec.executionId, "interrupted", p.at, {
      reason: interrupting!.reason,
      forced: true,
    });
    await finish(ctx, tx, p, exec, "interrupted", ErrorText.forcedInterrupt, [cause]);
    return "forced-interrupt";
  };
  switch (timer.kind) {
    case "pending": {
      if (exec.status !== "pending" || active?.executionId !== exec.executionId) return "noop";
      if (Date.parse(exec.activatedAt!) + ctx.config.pendingTimeoutMs > p.now) return "noop";
      const cause = serviceEvent(exec.executionId, "error", p.at, {
        error: ErrorText.neverConnected,
        fatal: true,
      });
      await finish(ctx, tx, p, exec, "failed", ErrorText.neverConnected, [cause]);
      return "failed";
    }
    case "grace": {
      if (exec.status !== "running" || grace?.executionId !== exec.executionId) return "noop";
      if (Date.parse(grace.disconnectedAt) + exec.graceMs > p.now) return "noop";
      if (interrupting) return await forced();
      const data: WrapperDisconnectedData = {
        error: ErrorText.wrapperDisconnected,
        fatal: true,
        reason: ErrorText.wrapperDisconnected,
        wsCloseCode: grace.wsCloseCode,
        wsCloseReason: grace.wsCloseReason,
      };
      const cause = serviceEvent(exec.executionId, "wrapper_disconnected", p.at, data);
      await finish(ctx, tx, p, exec, "failed", ErrorText.wrapperDisconnected, [cause]);
      return "failed";
    }
    case "heartbeat": {
      if (exec.status !== "running") return "noop";
      const dueAt = (exec.lastHeartbeatAt ?? Date.parse(exec.startedAt!)) + exec.heartbeatTimeoutMs;
      if (dueAt > p.now) {
        armTimer(tx, "heartbeat", exec.executionId, dueAt);
        return "rearmed";
      }
      if (interrupting) return await forced();
      const cause = serviceEvent(exec.executionId, "error", p.at, {
        error: ErrorText.heartbeatTimeout,
        fatal: true,
      });
      await finish(ctx, tx, p, exec, "failed", ErrorText.heartbeatTimeout, [cause]);
      return "failed";
    }
    case "interrupt": {
      if (exec.status !== "running" || !interrupting) return "noop";
      if (interrupting.at + ctx.config.interruptTimeoutMs > p.now) return "noop";
      return await forced();
    }
    default:
      return "noop";
  }
}

async function sessionTtl(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  timer: TimerRecord,
): Promise<string> {
  const session = await records.session(timer.id).get(tx);
  if (!session || session.deletedAt || session.incarnation !== timer.incarnation) return "noop";
  const [active, head] = await Promise.all([
    records.active(timer.id).get(tx),
    readHead(tx, timer.id),
  ]);
  const idleSince = Math.max(head.lastEventAt, Date.parse(session.createdAt));
  const dueAt = active ? p.now + ctx.config.sessionTtlMs : idleSince + ctx.config.sessionTtlMs;
  if (dueAt > p.now) {
    armTimer(tx, "ttl", timer.id, dueAt, { incarnation: session.incarnation });
    return "rearmed";
  }
  await tombstone(ctx, tx, p, timer.id);
  return "expired";
}

/**
 * Fires one deadline: runs its effect and deletes its timer entry in one checked commit.
 * A wake-up that finds the entry gone (another one won) does nothing. `peeked` is the
 * entry as the caller already read it (it only locates the session; the commit re-reads).
 */
export async function fireDeadline(
  ctx: LifecycleContext,
  timerKey: Deno.KvKey,
  peeked?: TimerRecord,
): Promise<Firing | null> {
  const sessionOf = async (timer: TimerRecord) =>
    timer.kind === "ttl" || timer.kind === "purge"
      ? timer.id
      : (await transact(ctx.kv, (tx) => records.execution(timer.id).get(tx)))?.sessionId ?? "";
  const peek = peeked ?? await transact(ctx.kv, (tx) => tx.get<TimerRecord>(timerKey));
  if (!peek) return null;
  const sid = await sessionOf(peek);
  const { result, effects } = await change(ctx, sid, async (tx, p) => {
    const timer = await tx.get<TimerRecord>(timerKey);
    if (!timer) return null;
    // An early wake-up must leave the deadline armed: deleting it would lose the deadline.
    if (timer.dueAt > p.now) return "early";
    tx.delete(timerKey);
    return await applyDeadline(ctx, tx, p, timer);
  });
  return result === null ? null : { outcome: result, effects };
}

/**
 * After a restart of a single-process service: every connection a previous process of this
 * KV held is gone, so each gets the disconnect record (close code 1012), which starts its
 * grace. Returns how many graces started.
 */
export async function recoverLostConnections(ctx: LifecycleContext): Promise<number> {
  let started = 0;
  for (const { executionId, conn } of await listConnections(ctx.kv)) {
    if (conn.instanceId === ctx.instanceId) continue;
    const close = { code: 1012, reason: "service restarted" };
    if (await recordDisconnect(ctx, executionId, conn.connectionId, close)) started++;
  }
  return started;
}
