/**
 * What each durable deadline does when it fires: every handler re-reads the state and does
 * nothing when it moved on, and firing deletes the deadline in the same checked commit.
 * Deadlines due together fire in batches that share commits ({@link fireDeadlines}).
 *
 * @module
 */
import { z } from "zod";
import { ErrorText, isTerminal, type WrapperDisconnectedData } from "../protocol.ts";
import {
  type ActiveSlot,
  appendEvents,
  armTimer,
  type ExecutionRecord,
  type ExecutionTimerKind,
  type GraceRecord,
  type InterruptFlag,
  isLive,
  readHead,
  records,
  type TimerRecord,
  type Tx,
} from "../store/mod.ts";
import { type BatchResult, transactMany } from "../store/transact_batch.ts";
import {
  afterCommit,
  done,
  type Effects,
  type LifecycleContext,
  type Outcome,
  Pending,
  type Refusal,
  refuse,
  serviceEvent,
} from "./transition.ts";
import { failWithError, finish } from "./finish.ts";
import { tombstone } from "./sessions.ts";

/** What firing a deadline did (metrics label and log field). */
export type FiringOutcome =
  /** The state had moved on: nothing to do (the deadline is removed). */
  | "noop"
  /** Not due yet when the commit ran: left armed. */
  | "early"
  /** Still in the future by the state's own clock: armed again for the new time. */
  | "rearmed"
  /** The execution failed (grace, heartbeat or pending-start timeout). */
  | "failed"
  /** An interrupted execution's wrapper never confirmed: ended `interrupted`. */
  | "forced-interrupt"
  /** The session's TTL passed: tombstoned. */
  | "expired"
  /** A deleted session's data was removed. */
  | "purged"
  /** A callback was answered with a success. */
  | "delivered"
  /** A callback try failed and another is armed. */
  | "retry"
  /** A callback's last try failed. */
  | "gave-up";

/** One fired deadline: the stored record, what it did, and the commit's effects. */
export interface Fired {
  timer: TimerRecord;
  outcome: FiringOutcome;
  effects: Effects;
}

/** A stored deadline value that is not one (a corrupt or foreign record): never fired. */
export class MalformedDeadlineError extends Error {
  override name = "MalformedDeadlineError";
}

const CallbackTarget = z.object({
  url: z.string(),
  body: z.object({ sessionId: z.string(), executionId: z.string(), status: z.string() })
    .loose(),
});

/** The stored deadline shapes (the one written since the first release). */
const TimerSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.enum(["grace", "heartbeat", "pending", "interrupt"]),
    id: z.string(),
    dueAt: z.number(),
  }),
  z.object({
    kind: z.enum(["ttl", "purge"]),
    id: z.string(),
    dueAt: z.number(),
    incarnation: z.string(),
  }),
  z.object({
    kind: z.literal("callback"),
    id: z.string(),
    dueAt: z.number(),
    attempt: z.int().min(1),
    callback: CallbackTarget,
  }),
]);

/**
 * Reads a stored deadline value; throws {@link MalformedDeadlineError} for anything that is
 * not one, so a corrupt record is reported instead of half-fired.
 */
export function parseTimer(value: unknown): TimerRecord {
  const parsed = TimerSchema.safeParse(value);
  if (!parsed.success) throw new MalformedDeadlineError("malformed deadline record");
  return parsed.data as TimerRecord;
}

/**
 * Reads the deadline at `key` and, for an execution deadline, its execution in the same
 * round trip (the id is part of the key): the session the events go to.
 */
async function readDeadline(
  tx: Tx,
  key: Deno.KvKey,
): Promise<{ timer: TimerRecord; sessionId: string } | null> {
  const subject = key[3];
  const isExecution = typeof subject === "string" && !SESSION_KINDS.has(String(key[2]));
  const [raw, exec] = isExecution
    ? await tx.getMany<[unknown, ExecutionRecord]>([key, records.execution(subject).key])
    : [await tx.get<unknown>(key), null];
  if (raw === null) return null;
  const timer = parseTimer(raw);
  if (timer.kind === "ttl" || timer.kind === "purge") return { timer, sessionId: timer.id };
  return { timer, sessionId: exec?.sessionId ?? "" };
}

/** Kinds whose subject is a session, not an execution. */
const SESSION_KINDS = new Set(["ttl", "purge"]);

/**
 * The transaction body that fires the deadline at `key`: re-reads it (gone: `null`), leaves
 * it armed when not due, else deletes it and applies its effect, appending the events.
 * `callback` and `purge` do I/O and are fired by the timer runner instead.
 */
function firingBody(
  ctx: LifecycleContext,
  key: Deno.KvKey,
): (tx: Tx) => Promise<Fired | null> {
  return async (tx) => {
    const read = await readDeadline(tx, key);
    if (!read) return null;
    const { timer, sessionId } = read;
    const p = new Pending(ctx.now());
    const effects: Effects = { sessionId, stored: [], notified: p.notified };
    // An early wake-up must leave the deadline armed: deleting it would lose the deadline.
    if (timer.dueAt > p.now) return { timer, outcome: "early", effects };
    tx.delete(key);
    const outcome = await applyDeadline(ctx, tx, p, timer);
    if (sessionId) effects.stored = await appendEvents(tx, sessionId, p.events, p.now);
    return { timer, outcome, effects };
  };
}

/** Why a firing did nothing at all: its entry is gone (another wake-up fired it). */
export type DeadlineGone = Refusal<"gone">;

/**
 * Fires one deadline: runs its effect and deletes its entry in one checked commit. A wake-up
 * that finds the entry gone (another one won) is refused with `gone`.
 */
export async function fireDeadline(
  ctx: LifecycleContext,
  key: Deno.KvKey,
): Promise<Outcome<Fired, DeadlineGone>> {
  const [result] = await fireDeadlines(ctx, [key]);
  if (!result.ok) throw result.error;
  return result.value ? done(result.value) : refuse({ code: "gone" });
}

/**
 * Fires several deadlines, sharing commits where their records do not overlap (within KV's
 * limits). Each keeps its own checks; one that fails or conflicts never costs another its
 * firing. Results are in the order of `keys` (`null`: the entry was gone); each committed
 * firing's after-commit step has run.
 */
export async function fireDeadlines(
  ctx: LifecycleContext,
  keys: readonly Deno.KvKey[],
): Promise<BatchResult<Fired | null>[]> {
  const bodies = keys.map((key) => firingBody(ctx, key));
  const results = await transactMany(ctx.kv, bodies, { queues: ctx.queues });
  for (const result of results) {
    if (result.ok && result.value) afterCommit(ctx, result.value.effects);
  }
  return results;
}

/** Applies a due deadline's effect inside the firing transaction. */
function applyDeadline(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  timer: TimerRecord,
): Promise<FiringOutcome> {
  switch (timer.kind) {
    case "grace":
    case "heartbeat":
    case "pending":
    case "interrupt":
      return executionDeadline(ctx, tx, p, timer.kind, timer.id);
    case "ttl":
      return sessionTtl(ctx, tx, p, timer.id, timer.incarnation);
    case "callback":
    case "purge":
      // Fired by the runner (they do I/O); reaching here means a caller mixed them in.
      throw new Error(`deadline kind ${timer.kind} is not fired in a transaction`);
  }
}

/** What an execution deadline reads before deciding (one round trip after the record). */
interface ExecutionState {
  exec: ExecutionRecord;
  /** The session's interrupt flag when it names this execution. */
  interrupting?: InterruptFlag;
  grace: GraceRecord | null;
  active: ActiveSlot | null;
}

async function executionDeadline(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  kind: ExecutionTimerKind,
  executionId: string,
): Promise<FiringOutcome> {
  const exec = await records.execution(executionId).get(tx);
  if (!exec || isTerminal(exec.status)) return "noop";
  const sid = exec.sessionId;
  const [flag, grace, active] = await tx.getMany<[InterruptFlag, GraceRecord, ActiveSlot]>([
    records.interrupt(sid).key,
    records.grace(sid).key,
    records.active(sid).key,
  ]);
  const interrupting = flag?.executionId === exec.executionId ? flag : undefined;
  const state: ExecutionState = { exec, interrupting, grace, active };
  switch (kind) {
    case "pending":
      return await pendingTimeout(ctx, tx, p, state);
    case "grace":
      return await graceExpiry(ctx, tx, p, state);
    case "heartbeat":
      return await heartbeatCheck(ctx, tx, p, state);
    case "interrupt":
      return await interruptTimeout(ctx, tx, p, state);
  }
}

/** An active `pending` execution whose wrapper never connected in time fails. */
async function pendingTimeout(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  { exec, active }: ExecutionState,
): Promise<FiringOutcome> {
  if (exec.status !== "pending" || active?.executionId !== exec.executionId) return "noop";
  if (exec.activatedAt === undefined) return "noop";
  if (Date.parse(exec.activatedAt) + ctx.config.pendingTimeoutMs > p.now) return "noop";
  await failWithError(ctx, tx, p, exec, ErrorText.neverConnected);
  return "failed";
}

/** A disconnect grace that ran out fails the execution (or forces a pending interrupt). */
async function graceExpiry(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  state: ExecutionState,
): Promise<FiringOutcome> {
  const { exec, grace } = state;
  if (exec.status !== "running" || grace?.executionId !== exec.executionId) return "noop";
  if (Date.parse(grace.disconnectedAt) + exec.graceMs > p.now) return "noop";
  if (state.interrupting) return await forceInterrupt(ctx, tx, p, exec, state.interrupting);
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

/** A running execution silent for too long fails; one heard from since is re-armed. */
async function heartbeatCheck(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  state: ExecutionState,
): Promise<FiringOutcome> {
  const { exec } = state;
  if (exec.status !== "running") return "noop";
  const heardAt = exec.lastHeartbeatAt ?? Date.parse(exec.startedAt ?? exec.createdAt);
  const dueAt = heardAt + exec.heartbeatTimeoutMs;
  if (dueAt > p.now) {
    armTimer(tx, "heartbeat", exec.executionId, dueAt);
    return "rearmed";
  }
  if (state.interrupting) return await forceInterrupt(ctx, tx, p, exec, state.interrupting);
  await failWithError(ctx, tx, p, exec, ErrorText.heartbeatTimeout);
  return "failed";
}

/** An interrupt the wrapper did not confirm in time is forced. */
async function interruptTimeout(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  { exec, interrupting }: ExecutionState,
): Promise<FiringOutcome> {
  if (exec.status !== "running" || !interrupting) return "noop";
  if (interrupting.at + ctx.config.interruptTimeoutMs > p.now) return "noop";
  return await forceInterrupt(ctx, tx, p, exec, interrupting);
}

/** Ends `exec` `interrupted` because its wrapper never confirmed the interrupt. */
async function forceInterrupt(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  exec: ExecutionRecord,
  flag: InterruptFlag,
): Promise<FiringOutcome> {
  const cause = serviceEvent(exec.executionId, "interrupted", p.at, {
    reason: flag.reason,
    forced: true,
  });
  await finish(ctx, tx, p, exec, "interrupted", ErrorText.forcedInterrupt, [cause]);
  return "forced-interrupt";
}

/** A session idle past its TTL is tombstoned; one still in use is re-armed. */
async function sessionTtl(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  sessionId: string,
  incarnation: string,
): Promise<FiringOutcome> {
  const session = await records.session(sessionId).get(tx);
  if (!isLive(session) || session.incarnation !== incarnation) return "noop";
  const [active, head] = await Promise.all([
    records.active(sessionId).get(tx),
    readHead(tx, sessionId),
  ]);
  const idleSince = Math.max(head.lastEventAt, Date.parse(session.createdAt));
  const dueAt = active ? p.now + ctx.config.sessionTtlMs : idleSince + ctx.config.sessionTtlMs;
  if (dueAt > p.now) {
    armTimer(tx, "ttl", sessionId, dueAt, { incarnation: session.incarnation });
    return "rearmed";
  }
  await tombstone(ctx, tx, p, sessionId);
  return "expired";
}
