/**
 * Ingest connection transitions: admission (ownership in KV, dial order, `pending →
 * running`), group commits of frames, liveness, disconnect records (the grace) and the
 * restart sweep.
 *
 * @module
 */
import { sha256Hex, timingSafeEqual, tokenExecutionId } from "../ids.ts";
import {
  CloseCode,
  DELIBERATE_CLOSE_CODES,
  type ExecutionStatus,
  isTerminal,
  MAX_EXECUTION_GRACE_MS,
  type TerminalStatus,
} from "../protocol.ts";
import {
  appendEvents,
  armTimer,
  type ConnRecord,
  type ExecutionRecord,
  isLive,
  type KnownEntries,
  listConnections,
  listTimers,
  type NewEvent,
  postToInbox,
  records,
  transact,
  type Tx,
} from "../store/mod.ts";
import { type BatchResult, transactMany } from "../store/transact_batch.ts";
import {
  change,
  done,
  type LifecycleContext,
  type Outcome,
  Pending,
  type Refusal,
  refuse,
  statusEvent,
} from "./transition.ts";
import { withoutUndefined } from "../objects.ts";
import { finish } from "./finish.ts";
import { confirmDelivery, inputState } from "./input.ts";

/** A dial as the `X-Tether-Dial` header describes it (absent: an unknown wrapper). */
export interface Dial {
  wrapperId: string;
  n: number;
}

/** An admitted connection: what serving it needs. */
export interface Admitted {
  sessionId: string;
  executionId: string;
  lastSeq: number;
  graceMs: number;
  /** The execution's `deliveredInputId`, for `hello` and the inputs sent after it. */
  deliveredInputId: number;
  /** How often liveness is written for this execution (see {@link heartbeatWriteEvery}). */
  heartbeatWriteMs: number;
  /** The pending interrupt's reason, when a kill must follow `hello`. */
  killReason?: string;
  /** Whether this admission cancelled a disconnect grace (metrics). */
  graceCancelled: boolean;
}

/**
 * Why an ingest connection was refused (PROTOCOL.md 5): a bad token, a token of another
 * execution, an ended execution (with its status), a queued one, or a dial older than the
 * current connection's. The ingest route maps each to its close code.
 */
export type AdmissionRefusal =
  | Refusal<"unauthorized">
  | Refusal<"forbidden">
  | Refusal<"executionDone", { status: TerminalStatus }>
  | Refusal<"notActiveYet">
  | Refusal<"replaced">;

/**
 * Admits an ingest connection (PROTOCOL.md 5): checks the token, the execution's state and
 * the dial order; makes it the current connection (the previous one, on any instance, gets
 * 4001); cancels a pending grace; `pending → running`. `known` (the connection's) keeps what
 * the admission's commit left, for the connection's frame commits. All of it is one checked
 * commit; a refusal commits nothing, and the ingest route maps its code to a close code.
 *
 * @example
 * ```ts
 * const path = { sessionId, executionId };
 * const dial = { wrapperId: "w1", n: 2 };
 * const outcome = await admitConnection(ctx, path, token, connectionId, dial);
 * if (outcome.ok) console.log("hello", outcome.value.lastSeq);
 * else console.log(outcome.refusal.code); // e.g. "notActiveYet": close 4009
 * ```
 */
export async function admitConnection(
  ctx: LifecycleContext,
  path: { sessionId: string; executionId: string },
  token: string | undefined,
  connectionId: string,
  dial: Dial | undefined,
  known?: KnownEntries,
): Promise<Outcome<Admitted, AdmissionRefusal>> {
  const tokenEid = token ? tokenExecutionId(token) : undefined;
  const tokenHash = token ? await sha256Hex(token) : "";
  const exec0 = tokenEid
    ? await transact(ctx.kv, (tx) => records.execution(tokenEid).get(tx))
    : null;
  if (!exec0) return refuse({ code: "unauthorized" });
  const sid = exec0.sessionId;
  return await change(ctx, sid, async (tx, p): Promise<Outcome<Admitted, AdmissionRefusal>> => {
    // Everything admission may read, in one round trip (a reconnect storm admits thousands).
    const eid = exec0.executionId;
    await tx.getMany([
      records.execution(eid).key,
      records.session(sid).key,
      records.active(sid).key,
      records.conn(eid).key,
      records.grace(sid).key,
      records.interrupt(sid).key,
    ]);
    const [exec, session] = await Promise.all([
      records.execution(exec0.executionId).get(tx),
      records.session(sid).get(tx),
    ]);
    if (!exec || !isLive(session) || !timingSafeEqual(exec.tokenHash, tokenHash)) {
      return refuse({ code: "unauthorized" });
    }
    if (exec.executionId !== path.executionId || sid !== path.sessionId) {
      return refuse({ code: "forbidden" });
    }
    if (isTerminal(exec.status)) return refuse({ code: "executionDone", status: exec.status });
    return await takeOver(ctx, tx, p, exec, { connectionId, dial });
  }, { known });
}

/**
 * The admission of a connection to an execution that may take one: refuses a queued
 * execution and a dial older than the current one of the same wrapper; otherwise makes it
 * the current connection (the previous holder, on any instance, is told to close with
 * 4001), cancels the grace and starts a pending execution.
 */
async function takeOver(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  exec: ExecutionRecord,
  incoming: { connectionId: string; dial: Dial | undefined },
): Promise<Outcome<Admitted, AdmissionRefusal>> {
  const sid = exec.sessionId;
  const { connectionId, dial } = incoming;
  const [active, conn, grace, flag] = await Promise.all([
    records.active(sid).get(tx),
    records.conn(exec.executionId).get(tx),
    records.grace(sid).get(tx),
    records.interrupt(sid).get(tx),
  ]);
  if (active?.executionId !== exec.executionId) return refuse({ code: "notActiveYet" });
  if (conn && dial && conn.wrapperId === dial.wrapperId && (conn.dialN ?? 0) > dial.n) {
    return refuse({ code: "replaced" });
  }
  if (conn) {
    postToInbox(tx, conn.instanceId, {
      type: "close",
      connectionId: conn.connectionId,
      code: CloseCode.replaced,
      reason: "replaced",
    });
    p.notified.add(conn.instanceId);
  }
  records.conn(exec.executionId).set(
    tx,
    withoutUndefined({
      connectionId,
      instanceId: ctx.instanceId,
      since: p.at,
      wrapperId: dial?.wrapperId,
      dialN: dial?.n,
    }) satisfies ConnRecord,
  );
  const graceCancelled = grace?.executionId === exec.executionId;
  if (graceCancelled) records.grace(sid).delete(tx);
  startRunning(tx, p, exec);
  return done({
    sessionId: sid,
    executionId: exec.executionId,
    lastSeq: exec.lastSeq,
    graceMs: exec.graceMs,
    deliveredInputId: inputState(exec).deliveredInputId,
    heartbeatWriteMs: heartbeatWriteEvery(ctx, exec),
    killReason: flag?.executionId === exec.executionId ? flag.reason : undefined,
    graceCancelled,
  });
}

/** Refreshes liveness; a pending execution becomes `running` and gets its heartbeat deadline. */
function startRunning(tx: Tx, p: Pending, exec: ExecutionRecord): void {
  let updated: ExecutionRecord = { ...exec, lastHeartbeatAt: p.now };
  if (exec.status === "pending") {
    updated = { ...updated, status: "running", startedAt: p.at };
    p.events.push(statusEvent(updated, "pending", true, p.at));
    armTimer(tx, "heartbeat", exec.executionId, p.now + exec.heartbeatTimeoutMs);
  }
  records.execution(exec.executionId).set(tx, updated);
}

/** A frame ready to commit: its seq (if any) and its event, or no event for a rejected frame whose seq it uses up. */
export interface PreparedFrame {
  seq?: number;
  event?: NewEvent;
  /** Set for a terminal frame: what it ends the execution as. */
  terminal?: { status: TerminalStatus; error?: string };
  /** Set for `input_delivered`: the inputId it confirms (checked against `lastInputId`). */
  deliveredInputId?: number;
}

/** What a frame commit did: the seq now durable and the execution's status after it. */
export interface FrameCommit {
  lastSeq: number;
  status: ExecutionStatus;
  /** Frames refused by the commit (an `input_delivered` above `lastInputId`): not stored. */
  refused: PreparedFrame[];
}

/** Why a frame commit or disconnect record refused: the connection is no longer current. */
export type NotCurrent = Refusal<"notCurrent">;

/** One connection's share of a commit: its frames (none for a liveness-only refresh). */
export interface FrameWork {
  sessionId: string;
  executionId: string;
  connectionId: string;
  frames: readonly PreparedFrame[];
  /** What this connection's last commit left in its records (saves the reads; checked). */
  known?: KnownEntries;
}

/**
 * Commits a batch of frames from the current connection (group commit): stores the new
 * ones in order, skips resends (`seq ≤ lastSeq`), advances `lastSeq`, refreshes liveness
 * (debounced), and applies a terminal frame's transition in the same commit (PROTOCOL.md
 * section 5.1). Refused with `notCurrent` when the connection is no longer current: nothing
 * is stored. The caller acks up to the returned `lastSeq`.
 *
 * @example
 * ```ts
 * const work = { sessionId, executionId, connectionId, frames: [{ seq: 1, event }] };
 * const outcome = await commitFrames(ctx, work);
 * if (outcome.ok) console.log("ack", outcome.value.lastSeq);
 * ```
 */
export async function commitFrames(
  ctx: LifecycleContext,
  work: FrameWork,
): Promise<Outcome<FrameCommit, NotCurrent>> {
  const { sessionId, known } = work;
  return await change(ctx, sessionId, (tx, p) => applyFrames(ctx, tx, p, work), { known });
}

/**
 * Commits the frames of several connections (none terminal) sharing KV commits where their
 * records do not overlap (`transactMany`, within KV's limits), every ownership check kept
 * (PROTOCOL.md 5: only the current connection's frames are stored). A connection that is no
 * longer current is refused and the others are stored all the same; when a shared commit
 * fails a check, each of its members commits again on its own, so one execution's change
 * never fails or holds back another's frames beyond that one attempt. Each stored work's
 * after-commit step has run; results are in the order of `works`.
 *
 * @example
 * ```ts
 * const [a, b] = await commitFrameBatch(ctx, [workOfA, workOfB]);
 * if (a.ok && a.value.ok) console.log("a stored up to", a.value.value.lastSeq);
 * ```
 */
export async function commitFrameBatch(
  ctx: LifecycleContext,
  works: readonly FrameWork[],
): Promise<BatchResult<Outcome<FrameCommit, NotCurrent>>[]> {
  if (works.length === 1) {
    // Nothing to share: the plain transaction (a busy single session's path).
    const outcome = await commitFrames(ctx, works[0])
      .then((value) => ({ ok: true as const, value }), (error) => ({ ok: false as const, error }));
    return [outcome];
  }
  const bodies = works.map((work) => async (tx: Tx) => {
    const p = new Pending(ctx.now());
    const outcome = await applyFrames(ctx, tx, p, work);
    const stored = await appendEvents(tx, work.sessionId, p.events, p.now);
    return { outcome, effects: { sessionId: work.sessionId, stored, notified: p.notified } };
  });
  const known = works.map((work) => work.known);
  const results = await transactMany(ctx.kv, bodies, { queues: ctx.queues, known });
  return results.map((result) => {
    if (!result.ok) return result;
    const { outcome, effects } = result.value;
    if (effects.stored.length > 0 || effects.notified.size > 0) ctx.committed(effects);
    return { ok: true, value: outcome };
  });
}

/**
 * One connection's frames inside a transaction: refused when it is not the current one;
 * otherwise stores them (via `p.events`), advances `lastSeq`, refreshes liveness when due
 * and applies a terminal frame.
 */
async function applyFrames(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  work: FrameWork,
): Promise<Outcome<FrameCommit, NotCurrent>> {
  const { sessionId, executionId, connectionId } = work;
  // The head is read with the others (one KV call, not two): appending the events needs it.
  const [exec, conn] = await tx.getMany<[ExecutionRecord, ConnRecord, unknown]>([
    records.execution(executionId).key,
    records.conn(executionId).key,
    records.head(sessionId).key,
  ]);
  if (!exec || conn?.connectionId !== connectionId) return refuse({ code: "notCurrent" });
  const { lastSeq, confirmed, events, refused, terminal } = sortFrames(exec, work.frames);
  const recordChanges = lastSeq !== exec.lastSeq || confirmed !== exec;
  // Liveness rides along whenever the record is written anyway: a frame inside the debounce
  // must not leave it stale, or the heartbeat deadline would fire early after it (section 8).
  const heartbeatDue = exec.status === "running" &&
    (recordChanges || p.now - (exec.lastHeartbeatAt ?? 0) >= heartbeatWriteEvery(ctx, exec));
  const updated: ExecutionRecord = {
    ...confirmed,
    lastSeq,
    lastHeartbeatAt: heartbeatDue ? p.now : exec.lastHeartbeatAt,
  };
  if (terminal && exec.status === "running") {
    await finish(ctx, tx, p, updated, terminal.status, terminal.error, events);
    return done({ lastSeq, status: terminal.status, refused });
  }
  p.events.push(...events);
  if (recordChanges || heartbeatDue) {
    records.execution(executionId).set(tx, updated);
  }
  return done({ lastSeq, status: exec.status, refused });
}

/**
 * The frames of a commit in order: resends skipped (`seq ≤ lastSeq`), input confirmations
 * applied to the record (one above `lastInputId` is refused, not stored), the events to store
 * and the terminal transition asked for.
 */
function sortFrames(exec: ExecutionRecord, frames: readonly PreparedFrame[]) {
  let lastSeq = exec.lastSeq;
  let confirmed = exec;
  const events: NewEvent[] = [];
  const refused: PreparedFrame[] = [];
  let terminal: PreparedFrame["terminal"];
  for (const frame of frames) {
    if (frame.seq !== undefined) {
      if (frame.seq !== lastSeq + 1) continue; // a resend (or a gap the connection already refused)
      lastSeq = frame.seq;
    }
    if (frame.deliveredInputId !== undefined) {
      const delivery = confirmDelivery(confirmed, frame.deliveredInputId);
      if (!delivery.valid) {
        refused.push(frame);
        continue;
      }
      confirmed = delivery.exec;
    }
    if (frame.event) events.push(frame.event);
    if (frame.terminal) terminal = frame.terminal;
  }
  return { lastSeq, confirmed, events, refused, terminal };
}

/**
 * The debounce of liveness writes: `TETHER_HEARTBEAT_WRITE_MS`, but at most a quarter of the
 * execution's heartbeat timeout, so a wrapper that sends frames never looks `stale` (half the
 * timeout) only because its last write was debounced.
 *
 * @example
 * ```ts
 * heartbeatWriteEvery(ctx, exec); // 5000 with the defaults (5000 vs 120000 / 4)
 * ```
 */
export function heartbeatWriteEvery(ctx: LifecycleContext, exec: ExecutionRecord): number {
  return Math.min(ctx.config.heartbeatWriteMs, exec.heartbeatTimeoutMs / 4);
}

/**
 * Records that a connection closed. Only when the execution's current connection is this
 * one does anything happen: the connection record is cleared and, for a running execution
 * and a close that is not one of the service's own deliberate ones, a grace record and its
 * deadline are written. A wrapper that closes with one of those codes itself is gone all the
 * same (PROTOCOL.md 5.4 exempts only the service's own), so `byService` tells them apart.
 * Returns whether a grace started. One checked commit; no event is emitted yet.
 *
 * @example
 * ```ts
 * const graceStarted = await recordDisconnect(ctx, executionId, connectionId, {
 *   code: 1006,
 *   reason: "",
 * });
 * ```
 */
export async function recordDisconnect(
  ctx: LifecycleContext,
  executionId: string,
  connectionId: string,
  close: CloseRecord,
): Promise<boolean> {
  return await transact(
    ctx.kv,
    (tx) => disconnect(ctx, tx, { executionId, connectionId }, close),
    { queues: ctx.queues },
  );
}

/** How a connection closed, and whether the service closed it. */
export interface CloseRecord {
  code: number;
  reason: string;
  byService?: boolean;
}

/** {@link recordDisconnect} inside a transaction. */
async function disconnect(
  ctx: LifecycleContext,
  tx: Tx,
  lost: { executionId: string; connectionId: string },
  close: CloseRecord,
): Promise<boolean> {
  const { executionId, connectionId } = lost;
  const [exec, conn] = await Promise.all([
    records.execution(executionId).get(tx),
    records.conn(executionId).get(tx),
  ]);
  if (!exec || conn?.connectionId !== connectionId) return false;
  records.conn(executionId).delete(tx);
  if (exec.status !== "running" || (close.byService && DELIBERATE_CLOSE_CODES.has(close.code))) {
    return false;
  }
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
}

/**
 * After a restart of a single-process service: every disconnect grace that was running when
 * the previous process stopped (a graceful stop records one for each socket it closes with
 * 1012) starts again from now, since no wrapper could come back while no process ran
 * (PROTOCOL.md 9.3). The grace record's `disconnectedAt` moves to now and a deadline is armed
 * `graceMs` later; the old deadline, when it fires, finds the grace not run out and does
 * nothing. Returns how many graces started again. Run at start-up, before
 * {@link recoverLostConnections} (whose graces start from now already).
 *
 * @example
 * ```ts
 * const restarted = await restartGraces(rt.ctx);
 * ```
 */
export async function restartGraces(ctx: LifecycleContext): Promise<number> {
  const now = ctx.now();
  // A running grace is due at most the longest grace after now; nothing later is read.
  const until = now + Math.max(MAX_EXECUTION_GRACE_MS, ctx.config.disconnectGraceMs);
  // An execution may have several grace deadlines: each disconnect and each restart arms one,
  // and the one that fires checks the grace record, so the older ones end as no-ops. Each
  // execution restarts once; restarting it once per deadline would arm one more deadline per
  // deadline at every restart, doubling them.
  const graced = [
    ...new Set(
      (await listTimers(ctx.kv, { until })).filter((t) => t.kind === "grace").map((t) => t.id),
    ),
  ];
  let restarted = 0;
  for (let i = 0; i < graced.length; i += RECOVERY_BATCH) {
    const batch = graced.slice(i, i + RECOVERY_BATCH);
    restarted += await transact(ctx.kv, async (tx) => {
      // The executions, then their sessions' graces: two KV calls, not two per execution.
      const execs = await tx.getMany<ExecutionRecord[]>(
        batch.map((executionId) => records.execution(executionId).key),
      );
      await tx.getMany(execs.flatMap((exec) => exec ? [records.grace(exec.sessionId).key] : []));
      let n = 0;
      for (const executionId of batch) if (await restartGrace(ctx, tx, executionId)) n++;
      return n;
    }, { queues: ctx.queues });
  }
  return restarted;
}

/** {@link restartGraces} for one execution inside a transaction; false when none runs. */
async function restartGrace(ctx: LifecycleContext, tx: Tx, executionId: string) {
  const exec = await records.execution(executionId).get(tx);
  if (exec?.status !== "running") return false;
  const grace = await records.grace(exec.sessionId).get(tx);
  if (grace?.executionId !== executionId) return false;
  const now = ctx.now();
  records.grace(exec.sessionId).set(tx, { ...grace, disconnectedAt: new Date(now).toISOString() });
  armTimer(tx, "grace", executionId, now + exec.graceMs);
  return true;
}

/** Lost connections recorded per commit by the restart sweep (2 checks, ≤ 4 mutations each). */
const RECOVERY_BATCH = 24;

/**
 * After a restart of a single-process service: every connection a previous process of this
 * KV held is gone, so each gets the disconnect record (close code 1012), which starts its
 * grace. Many share a commit (a restart storm must not take one commit per connection); a
 * wrapper that is already back has a new connection record, and its old one is skipped.
 * Returns how many graces started. This is the restart rule of PROTOCOL.md section 5.4; a
 * connection held by this same instance (its own id) is left alone.
 *
 * @example
 * ```ts
 * const started = await recoverLostConnections(rt.ctx);
 * rt.metrics.inc(MetricName.graceStarted, {}, started);
 * ```
 */
export async function recoverLostConnections(ctx: LifecycleContext): Promise<number> {
  const lost = (await listConnections(ctx.kv))
    .filter(({ conn }) => conn.instanceId !== ctx.instanceId)
    .map(({ executionId, conn }) => ({ executionId, connectionId: conn.connectionId }));
  const close = { code: CloseCode.restart, reason: "service restarted" };
  let started = 0;
  for (let i = 0; i < lost.length; i += RECOVERY_BATCH) {
    const batch = lost.slice(i, i + RECOVERY_BATCH);
    started += await transact(ctx.kv, async (tx) => {
      await tx.getMany(batch.flatMap(({ executionId }) => [
        records.execution(executionId).key,
        records.conn(executionId).key,
      ]));
      let n = 0;
      for (const one of batch) if (await disconnect(ctx, tx, one, close)) n++;
      return n;
    }, { queues: ctx.queues });
  }
  return started;
}
