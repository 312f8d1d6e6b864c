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
  executionDoneReason,
  type ExecutionStatus,
  isTerminal,
  type TerminalStatus,
} from "../protocol.ts";
import {
  appendEvents,
  armTimer,
  type ConnRecord,
  type ExecutionRecord,
  listConnections,
  type NewEvent,
  postToInbox,
  readHead,
  records,
  transact,
  TransactionConflictError,
  type Tx,
} from "../store/mod.ts";
import {
  change,
  type Effects,
  type LifecycleContext,
  Pending,
  statusEvent,
  strip,
} from "./transition.ts";
import { finish } from "./finish.ts";

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
    /** How often liveness is written for this execution (see {@link heartbeatWriteEvery}). */
    heartbeatWriteMs: number;
    /** The pending interrupt's reason, when a kill must follow `hello`. */
    killReason?: string;
    /** Whether this admission cancelled a disconnect grace (metrics). */
    graceCancelled: boolean;
    effects: Effects;
  };

/** An admission decided inside the transaction, before its effects are known. */
type Decision =
  | Exclude<Admission, { admitted: true }>
  | Omit<Extract<Admission, { admitted: true }>, "effects">;

const refused = (code: number, reason: string): Decision => ({ admitted: false, code, reason });
const UNAUTHORIZED = refused(CloseCode.unauthorized, "unauthorized");

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
  const located = tokenEid
    ? await transact(ctx.kv, (tx) => records.execution(tokenEid).get(tx))
    : null;
  if (!located) return UNAUTHORIZED as Admission;
  const sid = located.sessionId;
  const { result, effects } = await change(ctx, sid, async (tx, p): Promise<Decision> => {
    const [exec, session] = await Promise.all([
      records.execution(located.executionId).get(tx),
      records.session(sid).get(tx),
    ]);
    if (!exec || !session || session.deletedAt || !timingSafeEqual(exec.tokenHash, tokenHash)) {
      return UNAUTHORIZED;
    }
    if (exec.executionId !== path.executionId || sid !== path.sessionId) {
      return refused(CloseCode.forbidden, "forbidden");
    }
    if (isTerminal(exec.status)) {
      return refused(CloseCode.executionDone, executionDoneReason(exec.status));
    }
    return await takeOver(ctx, tx, p, exec, { connectionId, dial });
  });
  return result.admitted ? { ...result, effects } : result;
}

/**
 * The admission of a connection to an execution that may take one: refuses a queued
 * execution (4009) and a dial older than the current one of the same wrapper (4001),
 * otherwise makes it current (the previous holder is told to close with 4001), cancels the
 * grace and starts a pending execution.
 */
async function takeOver(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  exec: ExecutionRecord,
  incoming: { connectionId: string; dial: Dial | undefined },
): Promise<Decision> {
  const sid = exec.sessionId;
  const { connectionId, dial } = incoming;
  const [active, conn, grace, flag] = await Promise.all([
    records.active(sid).get(tx),
    records.conn(exec.executionId).get(tx),
    records.grace(sid).get(tx),
    records.interrupt(sid).get(tx),
  ]);
  if (active?.executionId !== exec.executionId) {
    return refused(CloseCode.notActiveYet, "not active yet");
  }
  if (conn && dial && conn.wrapperId === dial.wrapperId && (conn.dialN ?? 0) > dial.n) {
    return refused(CloseCode.replaced, "replaced");
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
  startRunning(tx, p, exec);
  return {
    admitted: true,
    sessionId: sid,
    executionId: exec.executionId,
    lastSeq: exec.lastSeq,
    graceMs: exec.graceMs,
    heartbeatWriteMs: heartbeatWriteEvery(ctx, exec),
    killReason: flag?.executionId === exec.executionId ? flag.reason : undefined,
    graceCancelled,
  };
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
}

/** One connection's share of a commit: its frames (none for a liveness-only refresh). */
export interface FrameWork {
  sessionId: string;
  executionId: string;
  connectionId: string;
  frames: readonly PreparedFrame[];
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
export async function commitFrames(ctx: LifecycleContext, work: FrameWork): Promise<FrameCommit> {
  const { result, effects } = await change(
    ctx,
    work.sessionId,
    (tx, p) => applyFrames(ctx, tx, p, work),
  );
  return result ? { ok: true, ...result, effects } : { ok: false };
}

/**
 * Commits the frames of several connections (of different sessions, none terminal) in one
 * KV commit, every ownership check kept (PROTOCOL.md 5: only the current connection's frames
 * are stored). A connection that is no longer current gets `ok: false` and the others are
 * stored all the same. When the shared commit fails a check (one execution changed
 * meanwhile), each work is committed on its own, so no execution's change fails or holds
 * back another's frames beyond that one attempt.
 *
 * @example
 * ```ts
 * const [a, b] = await commitFrameBatch(ctx, [workOfA, workOfB]);
 * if (a.ok) rt.committed(a.effects);
 * ```
 */
export async function commitFrameBatch(
  ctx: LifecycleContext,
  works: readonly FrameWork[],
): Promise<FrameCommit[]> {
  if (works.length === 1) return [await commitFrames(ctx, works[0])];
  try {
    return await transact(ctx.kv, async (tx) => {
      // Every key of the batch in parallel reads (one round trip), not one work after another.
      await prefetch(tx, works.flatMap(ownershipKeys));
      const now = ctx.now();
      const out: FrameCommit[] = [];
      for (const work of works) {
        const p = new Pending(now);
        const applied = await applyFrames(ctx, tx, p, work);
        if (!applied) {
          out.push({ ok: false });
          continue;
        }
        const stored = await appendEvents(tx, work.sessionId, p.events, p.now);
        const effects = { sessionId: work.sessionId, stored, notified: p.notified };
        out.push({ ok: true, ...applied, effects });
      }
      return out;
    }, { queues: ctx.queues, maxAttempts: 1 });
  } catch (err) {
    if (!(err instanceof TransactionConflictError)) throw err;
    return await Promise.all(works.map((work) => commitFrames(ctx, work)));
  }
}

/** The keys a work reads: checked at commit, so a replaced connection fails it. */
function ownershipKeys(work: FrameWork): Deno.KvKey[] {
  return [
    records.execution(work.executionId).key,
    records.conn(work.executionId).key,
    records.head(work.sessionId).key,
  ];
}

/** Reads keys into the transaction's snapshot, at most ten per call, the calls in parallel. */
async function prefetch(tx: Tx, keyList: Deno.KvKey[]): Promise<void> {
  const calls: Promise<unknown>[] = [];
  for (let i = 0; i < keyList.length; i += 10) calls.push(tx.getMany(keyList.slice(i, i + 10)));
  await Promise.all(calls);
}

/** Checks and KV mutations a work may need in the worst case (KV allows 100 and 1,000). */
export function frameWorkCost(
  work: FrameWork,
  bytes: number,
): { checks: number; mutations: number } {
  const largeChunks = Math.ceil(bytes / 60_000);
  return { checks: ownershipKeys(work).length, mutations: 2 + work.frames.length + largeChunks };
}

/**
 * One connection's frames inside a transaction: `null` when it is not the current one;
 * otherwise stores them (via `p.events`), advances `lastSeq`, refreshes liveness when due
 * and applies a terminal frame.
 */
async function applyFrames(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  work: FrameWork,
): Promise<{ lastSeq: number; status: ExecutionStatus } | null> {
  const { executionId, sessionId, connectionId } = work;
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
  for (const frame of work.frames) {
    if (frame.seq !== undefined) {
      if (frame.seq !== lastSeq + 1) continue; // a resend (or a gap the connection already refused)
      lastSeq = frame.seq;
    }
    if (frame.event) events.push(frame.event);
    if (frame.terminal) terminal = frame.terminal;
  }
  const heartbeatDue = exec.status === "running" &&
    p.now - (exec.lastHeartbeatAt ?? 0) >= heartbeatWriteEvery(ctx, exec);
  const updated: ExecutionRecord = {
    ...exec,
    lastSeq,
    lastHeartbeatAt: heartbeatDue ? p.now : exec.lastHeartbeatAt,
  };
  if (terminal && exec.status === "running") {
    await finish(ctx, tx, p, updated, terminal.status, terminal.error, events);
    return { lastSeq, status: terminal.status };
  }
  p.events.push(...events);
  if (lastSeq !== exec.lastSeq || heartbeatDue) records.execution(executionId).set(tx, updated);
  return { lastSeq, status: exec.status };
}

/**
 * The debounce of liveness writes: `TETHER_HEARTBEAT_WRITE_MS`, but at most a quarter of the
 * execution's heartbeat timeout, so a wrapper that sends frames never looks `stale` (half the
 * timeout) only because its last write was debounced.
 */
export function heartbeatWriteEvery(ctx: LifecycleContext, exec: ExecutionRecord): number {
  return Math.min(ctx.config.heartbeatWriteMs, exec.heartbeatTimeoutMs / 4);
}

/** Close codes the service sends on purpose: when it sent them, they never start a grace. */
const SERVICE_CLOSES: ReadonlySet<number> = new Set([
  CloseCode.executionDone,
  CloseCode.replaced,
  CloseCode.unauthorized,
  CloseCode.forbidden,
  CloseCode.notActiveYet,
]);

/**
 * Records that a connection closed. Only when the execution's current connection is this
 * one does anything happen: the connection record is cleared and, for a running execution
 * and a close that is not one of the service's own deliberate ones, a grace record and its
 * deadline are written. A wrapper that closes with one of those codes itself is gone all the
 * same (PROTOCOL.md 5.4 exempts only the service's own), so `byService` tells them apart.
 * Returns whether a grace started.
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
  if (exec.status !== "running" || (close.byService && SERVICE_CLOSES.has(close.code))) {
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

/** Lost connections recorded per commit by the restart sweep (2 checks, ≤ 4 mutations each). */
const RECOVERY_BATCH = 24;

/**
 * After a restart of a single-process service: every connection a previous process of this
 * KV held is gone, so each gets the disconnect record (close code 1012), which starts its
 * grace. Many at once share a commit (a restart storm must not take a commit per
 * connection); a wrapper that is already back has a new connection record, and its old one
 * is then skipped. Returns how many graces started.
 */
export async function recoverLostConnections(ctx: LifecycleContext): Promise<number> {
  const lost = (await listConnections(ctx.kv))
    .filter(({ conn }) => conn.instanceId !== ctx.instanceId)
    .map(({ executionId, conn }) => ({ executionId, connectionId: conn.connectionId }));
  const close = { code: CloseCode.restart, reason: "service restarted" };
  let started = 0;
  for (let i = 0; i < lost.length; i += RECOVERY_BATCH) {
    const batch = lost.slice(i, i + RECOVERY_BATCH);
    const graces = await transact(ctx.kv, async (tx) => {
      await prefetch(
        tx,
        batch.flatMap(({ executionId }) => [
          records.execution(executionId).key,
          records.conn(executionId).key,
        ]),
      );
      let n = 0;
      for (const one of batch) if (await disconnect(ctx, tx, one, close)) n++;
      return n;
    }, { queues: ctx.queues });
    started += graces;
  }
  return started;
}
