/**
 * What each durable deadline does when it fires: every handler re-reads the state and does
 * nothing when it moved on, and firing deletes the deadline in the same checked commit.
 *
 * @module
 */
import { ErrorText, isTerminal, type WrapperDisconnectedData } from "../protocol.ts";
import {
  armTimer,
  isLive,
  readHead,
  records,
  type TimerRecord,
  transact,
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
} from "./transition.ts";
import { failWithError, finish } from "./finish.ts";
import { tombstone } from "./sessions.ts";

/** What firing a deadline did. */
export interface Firing {
  /** A short description for logs and metrics (`failed`, `rearmed`, `early`, `noop`, …). */
  outcome: string;
}

/** Why a firing did nothing at all: its entry is gone (another wake-up fired it). */
export type DeadlineGone = Refusal<"gone">;

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
      await failWithError(ctx, tx, p, exec, ErrorText.neverConnected);
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
      await failWithError(ctx, tx, p, exec, ErrorText.heartbeatTimeout);
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
  if (!isLive(session) || session.incarnation !== timer.incarnation) return "noop";
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
 * A wake-up that finds the entry gone (another one won) does nothing and is refused.
 * `peeked` is the entry as the caller already read it (it only locates the session; the
 * commit re-reads).
 */
export async function fireDeadline(
  ctx: LifecycleContext,
  timerKey: Deno.KvKey,
  peeked?: TimerRecord,
): Promise<Outcome<Firing, DeadlineGone>> {
  const sessionOf = async (timer: TimerRecord) =>
    timer.kind === "ttl" || timer.kind === "purge"
      ? timer.id
      : (await transact(ctx.kv, (tx) => records.execution(timer.id).get(tx)))?.sessionId ?? "";
  const peek = peeked ?? await transact(ctx.kv, (tx) => tx.get<TimerRecord>(timerKey));
  if (!peek) return refuse({ code: "gone" });
  const sid = await sessionOf(peek);
  return await change(ctx, sid, async (tx, p): Promise<Outcome<Firing, DeadlineGone>> => {
    const timer = await tx.get<TimerRecord>(timerKey);
    if (!timer) return refuse({ code: "gone" });
    // An early wake-up must leave the deadline armed: deleting it would lose the deadline.
    if (timer.dueAt > p.now) return done({ outcome: "early" });
    tx.delete(timerKey);
    return done({ outcome: await applyDeadline(ctx, tx, p, timer) });
  });
}
