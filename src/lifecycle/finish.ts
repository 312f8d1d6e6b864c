/**
 * Ending an execution: the one place that clears the session's active slot and interrupt
 * flag (only when they name the execution being ended, or when the whole session is being
 * deleted), promotes the next queued execution, clears the execution's grace and
 * connection records and closes its connection with 4000 wherever it is held; plus the fail
 * and interrupt transitions built on it. (The connection transitions clear grace and
 * connection records too, each only for its own connection: a reconnect cancels its grace,
 * a close ends its connection record.)
 *
 * @module
 */
import {
  type CallbackBody,
  CloseCode,
  cutErrorText,
  cutText,
  ErrorCode,
  ErrorText,
  executionDoneReason,
  type ExecutionStatus,
  isTerminal,
  type TerminalStatus,
} from "../protocol.ts";
import {
  armTimer,
  type ExecutionRecord,
  type InterruptFlag,
  isLive,
  type NewEvent,
  postToInbox,
  records,
  type Tx,
} from "../store/mod.ts";
import {
  change,
  done,
  type LifecycleContext,
  type Outcome,
  Pending,
  type Refusal,
  refuse,
  serviceEvent,
  statusEvent,
} from "./transition.ts";
import { withoutUndefined } from "../objects.ts";

/** Why an execution transition refused: no such execution in this live session. */
export type ExecutionNotFound = Refusal<typeof ErrorCode.executionNotFound>;

/**
 * The keys {@link finish} reads to end `exec` (its events' head included), for a caller that
 * reads them ahead in one round trip with `tx.prefetch`.
 *
 * @example
 * ```ts
 * await tx.prefetch(finishReads(exec)); // then finish() reads nothing more from KV
 * ```
 */
export function finishReads(exec: ExecutionRecord): Deno.KvKey[] {
  const sid = exec.sessionId;
  const sessionKeys = [
    records.active,
    records.queue,
    records.interrupt,
    records.grace,
    records.head,
  ]
    .map((entry) => entry(sid).key);
  return exec.status === "running"
    ? [...sessionKeys, records.conn(exec.executionId).key]
    : sessionKeys;
}

/**
 * Moves `exec` to a terminal status inside the transaction. Appends `cause` events, then its
 * `execution_status`; clears the active slot, interrupt flag, grace record and connection
 * only when they name this execution (the ownership rule, PROTOCOL.md section 3); promotes the
 * next queued execution in the same commit (unless the session is being deleted); closes the
 * connection with 4000 wherever it is held; arms the completion callback. The error text is
 * cut to 1,024 code points; the caller checks that `exec` is not terminal yet.
 *
 * @example
 * ```ts
 * const cause = serviceEvent(exec.executionId, "interrupted", p.at, { reason });
 * await finish(ctx, tx, p, exec, "interrupted", reason, [cause]);
 * ```
 */
export async function finish(
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
  const ended: ExecutionRecord = withoutUndefined({
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
      code: CloseCode.executionDone,
      reason: executionDoneReason(status),
    });
    p.notified.add(conn.instanceId);
  }
  if (exec.callbackUrl) {
    const body: CallbackBody = withoutUndefined({
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

/** Options of {@link failWithError}. */
export interface FailOptions {
  /** Type of the failure event. Default `error`. */
  streamEventType?: string;
  /** Whether the next queued execution is promoted. Default `true`. */
  promote?: boolean;
}

/**
 * Inside a transaction: fails `exec` with one failure event `{error, fatal: true}`, the
 * failure of every ending that has no cause event of its own (fail route, deadlines,
 * deletion; PROTOCOL.md section 7).
 *
 * @example
 * ```ts
 * await failWithError(ctx, tx, p, exec, ErrorText.heartbeatTimeout);
 * ```
 */
export async function failWithError(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  exec: ExecutionRecord,
  error: string,
  options: FailOptions = {},
): Promise<void> {
  const { streamEventType = "error", promote = true } = options;
  const cause = serviceEvent(exec.executionId, streamEventType, p.at, { error, fatal: true });
  await finish(ctx, tx, p, exec, "failed", error, [cause], { promote });
}

/**
 * Fails an execution of a live session with one failure event (type `streamEventType`,
 * default `error`; data `{error, fatal: true}`). `failed: false`, committing nothing, when
 * the execution is already terminal (PROTOCOL.md section 3: failExecution is idempotent);
 * refused when the session or the execution is unknown.
 *
 * @example
 * ```ts
 * const outcome = await failExecution(ctx, "ses_1", executionId, { error: "agent crashed" });
 * if (outcome.ok) console.log(outcome.value.failed); // false when it had ended already
 * ```
 */
export async function failExecution(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
  failure: { error: string; streamEventType?: string },
): Promise<Outcome<{ failed: boolean }, ExecutionNotFound>> {
  return await change(ctx, sessionId, async (tx, p) => {
    const current = await executionOf(tx, sessionId, executionId);
    if (!current) return refuse({ code: ErrorCode.executionNotFound });
    if (isTerminal(current.status)) return done({ failed: false });
    await failWithError(ctx, tx, p, current, failure.error, failure);
    return done({ failed: true });
  });
}

/**
 * Inside the transaction that deletes a session: fails each of its live executions with
 * `Session deleted` (promoting nothing), then clears the session's active slot, queue,
 * interrupt flag and grace record, whatever they name: the session itself ends.
 *
 * @example
 * ```ts
 * await finishSession(ctx, tx, p, sessionId); // then write the tombstone
 * ```
 */
export async function finishSession(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  sessionId: string,
): Promise<void> {
  const [active, queue] = await Promise.all([
    records.active(sessionId).get(tx),
    records.queue(sessionId).get(tx),
  ]);
  const live = [...(active ? [active.executionId] : []), ...(queue?.executionIds ?? [])];
  for (const eid of live) {
    const exec = await records.execution(eid).get(tx);
    if (!exec || isTerminal(exec.status)) continue;
    await failWithError(ctx, tx, p, exec, ErrorText.sessionDeleted, { promote: false });
  }
  for (const entry of [records.active, records.queue, records.interrupt, records.grace]) {
    entry(sessionId).delete(tx);
  }
}

/**
 * Inside a transaction: the execution when it belongs to this live session, else `null`
 * (both reads checked at commit).
 *
 * @example
 * ```ts
 * const exec = await executionOf(tx, "ses_1", executionId);
 * if (!exec) return refuse({ code: ErrorCode.executionNotFound });
 * ```
 */
export async function executionOf(
  tx: Tx,
  sessionId: string,
  executionId: string,
): Promise<ExecutionRecord | null> {
  const [session, exec] = await Promise.all([
    records.session(sessionId).get(tx),
    records.execution(executionId).get(tx),
  ]);
  return isLive(session) && exec?.sessionId === sessionId ? exec : null;
}

/**
 * Most code points of an interrupt reason the flag keeps for a forced interrupt's event: at
 * up to 4 bytes each (UTF-16 surrogate pairs), a reason this long fits one 64 KiB KV value
 * with room to spare.
 */
const KEPT_REASON_CHARS = 8192;

/**
 * Interrupts an execution (PROTOCOL.md section 8). Queued or pending: `interrupted` at once.
 * Running: sets the interrupt flag (the first reason and deadline stay), asks the
 * connection's instance to send `kill`, and arms the interrupt deadline. Terminal: unchanged.
 * One checked commit. Returns the status after the call; refused when the session or the
 * execution is unknown.
 *
 * @example
 * ```ts
 * const outcome = await interruptExecution(ctx, "ses_1", executionId, "user pressed stop");
 * if (outcome.ok) console.log(outcome.value.status); // "running" until the wrapper confirms
 * ```
 */
export async function interruptExecution(
  ctx: LifecycleContext,
  sessionId: string,
  executionId: string,
  reason: string | undefined,
): Promise<Outcome<{ status: ExecutionStatus }, ExecutionNotFound>> {
  const whole = reason ?? ErrorText.userInterrupted;
  // The kill frame and the execution carry the cut text; the `interrupted` event keeps it
  // whole (PROTOCOL.md 1), also when a deadline emits it later from the flag, which keeps
  // up to KEPT_REASON_CHARS so it always fits one KV value.
  const kept = cutText(whole, KEPT_REASON_CHARS);
  return await change(ctx, sessionId, async (tx, p) => {
    const exec = await executionOf(tx, sessionId, executionId);
    if (!exec) return refuse({ code: ErrorCode.executionNotFound });
    if (isTerminal(exec.status)) return done({ status: exec.status });
    if (exec.status === "pending") {
      const cause = serviceEvent(executionId, "interrupted", p.at, { reason: whole });
      await finish(ctx, tx, p, exec, "interrupted", whole, [cause]);
      return done({ status: "interrupted" });
    }
    const [flag, conn] = await Promise.all([
      records.interrupt(sessionId).get(tx),
      records.conn(executionId).get(tx),
    ]);
    const current = flag?.executionId === executionId ? flag : undefined;
    if (!current) {
      records.interrupt(sessionId).set(
        tx,
        { executionId, reason: kept, at: p.now } satisfies InterruptFlag,
      );
      armTimer(tx, "interrupt", executionId, p.now + ctx.config.interruptTimeoutMs);
    }
    if (conn) {
      postToInbox(tx, conn.instanceId, {
        type: "kill",
        connectionId: conn.connectionId,
        reason: cutErrorText(current?.reason ?? whole),
      });
      p.notified.add(conn.instanceId);
    }
    return done({ status: exec.status });
  });
}
