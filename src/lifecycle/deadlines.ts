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
  type TimerEntry,
  type TimerRecord,
  type Tx,
} from "../store/mod.ts";
import { type BatchResult, transactMany } from "../store/transact_batch.ts";
import { getManyChunked, keyId } from "../store/transact.ts";
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
import { failWithError, finish, finishReads } from "./finish.ts";
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

/**
 * A stored deadline value that is not one (a corrupt or foreign record): never fired.
 *
 * @example
 * ```ts
 * try {
 *   parseTimer({ kind: "grace" }); // no id, no dueAt
 * } catch (err) {
 *   console.log(err instanceof MalformedDeadlineError); // true
 * }
 * ```
 */
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
 *
 * @example
 * ```ts
 * const timer = parseTimer({ kind: "grace", id: "exc_1", dueAt: 1_767_225_600_000 });
 * timer.kind; // "grace"
 * ```
 */
export function parseTimer(value: unknown): TimerRecord {
  const parsed = TimerSchema.safeParse(value);
  if (!parsed.success) throw new MalformedDeadlineError("malformed deadline record");
  return parsed.data as TimerRecord;
}

/**
 * A deadline to fire: its key, or its entry as a listing read it. A listed entry stands in for
 * re-reading the deadline (its versionstamp is checked at commit, so a deadline changed or
 * fired since the listing is not fired from the stale copy).
 */
export type DeadlineRef = Deno.KvKey | ListedDeadline;

/** A deadline as a listing read it, with what its firing will read when read ahead. */
export interface ListedDeadline extends TimerEntry {
  /** Entries read before the deadline fell due ({@link readAhead}), checked once used. */
  ahead?: readonly Deno.KvEntryMaybe<unknown>[];
}

/** Whether `ref` is a listed entry rather than a bare key. */
const isListed = (ref: DeadlineRef): ref is ListedDeadline => !Array.isArray(ref);

/** The key of a {@link DeadlineRef}. */
export const deadlineKey = (ref: DeadlineRef): Deno.KvKey => isListed(ref) ? ref.key : ref;

/** Kinds whose subject is a session, not an execution. */
const SESSION_KINDS = new Set(["ttl", "purge"]);
/** Kinds the timer runner fires with I/O (`src/deadline_io.ts`), not in a transaction. */
export const IO_DEADLINE_KINDS: ReadonlySet<string> = new Set(["callback", "purge"]);

/**
 * What a firing of `key` will read first, in one round trip: the deadline with its subject's
 * records (for a session: the session, its active slot and head; for an execution: its
 * record, and its connection unless the kind is `heartbeat`, which a live execution decides
 * from its record alone).
 */
function firstReads(key: Deno.KvKey): Deno.KvKey[] {
  const [, , kind, subject] = key;
  // Callbacks and purges are fired with I/O by the runner, outside any transaction.
  if (typeof subject !== "string" || IO_DEADLINE_KINDS.has(String(kind))) return [key];
  if (SESSION_KINDS.has(String(kind))) {
    return [
      key,
      records.session(subject).key,
      records.active(subject).key,
      records.head(subject).key,
    ];
  }
  const exec = records.execution(subject).key;
  return kind === "heartbeat" ? [key, exec] : [key, exec, records.conn(subject).key];
}

/**
 * Reads, before listed deadlines fall due, what their firings will read (each one's subject's
 * records; for an execution that may end, what ending it reads), the keys of all of them
 * packed 10 to a KV call: two rounds of calls in all. Handed to each firing as
 * {@link ListedDeadline.ahead}, they leave it nothing to read but what changed, each entry
 * checked at its versionstamp once used. So the reads of a storm of deadlines due together
 * happen while they are not due yet. Results are in the order of `keys`.
 *
 * @example
 * ```ts
 * const [ahead] = await readAhead(kv, [entry.key]);
 * await fireDeadlines(ctx, [{ ...entry, ahead }]);
 * ```
 */
export async function readAhead(
  kv: Deno.Kv,
  keys: readonly Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<unknown>[][]> {
  // The deadline itself is listed: only its subject's records are read.
  const first = await getManyPacked(kv, keys.map((key) => firstReads(key).slice(1)));
  const more = await getManyPacked(kv, keys.map((key, i) => endingReads(key, first[i])));
  return first.map((entries, i) => [...entries, ...more[i]]);
}

/** What ending the subject of the deadline `key` reads besides `read` (none when it cannot end). */
function endingReads(key: Deno.KvKey, read: Deno.KvEntryMaybe<unknown>[]): Deno.KvKey[] {
  const [, , kind] = key;
  const [first] = read;
  const isExec = first?.key[0] === records.execution("").key[0];
  const exec = isExec ? first.value as ExecutionRecord | null : null;
  if (!exec || kind === "heartbeat" || isTerminal(exec.status)) return [];
  const seen = new Set(read.map((entry) => keyId(entry.key)));
  return finishReads(exec).filter((k) => !seen.has(keyId(k)));
}

/** Reads several key lists in as few KV calls as possible (10 keys each), side by side. */
async function getManyPacked(
  kv: Deno.Kv,
  lists: readonly Deno.KvKey[][],
): Promise<Deno.KvEntryMaybe<unknown>[][]> {
  const entries = await getManyChunked(kv, lists.flat());
  let at = 0;
  return lists.map((list) => entries.slice(at, at += list.length));
}

/** Reads and parses the deadline at `key` (`null`: gone), its first reads fetched along. */
async function readDeadline(tx: Tx, key: Deno.KvKey): Promise<TimerRecord | null> {
  await tx.prefetch(firstReads(key));
  const raw = await tx.get<unknown>(key);
  return raw === null ? null : parseTimer(raw);
}

/**
 * The transaction body that fires the deadline `ref`: re-reads it (gone: `null`), leaves it
 * armed when not due, else deletes it and applies its effect, appending the events.
 * `callback` and `purge` do I/O and are fired by the timer runner instead.
 */
function firingBody(
  ctx: LifecycleContext,
  ref: DeadlineRef,
): (tx: Tx) => Promise<Fired | null> {
  const key = deadlineKey(ref);
  let listed = isListed(ref) ? ref : undefined;
  return async (tx) => {
    // The listed entries serve the first run only: a rerun after a conflict reads afresh.
    if (listed) { for (const entry of [listed, ...listed.ahead ?? []]) tx.know(entry); }
    listed = undefined;
    const timer = await readDeadline(tx, key);
    if (!timer) return null;
    const p = new Pending(ctx.now());
    const effects: Effects = { sessionId: "", stored: [], notified: p.notified };
    // An early wake-up must leave the deadline armed: deleting it would lose the deadline.
    if (timer.dueAt > p.now) return { timer, outcome: "early", effects };
    tx.delete(key);
    const outcome = await applyDeadline(ctx, tx, p, timer);
    if (p.events.length > 0) {
      effects.sessionId = await subjectSession(tx, timer);
      effects.stored = await appendEvents(tx, effects.sessionId, p.events, p.now);
    }
    return { timer, outcome, effects };
  };
}

/** The session a deadline's events go to (its subject's record was read by the firing). */
async function subjectSession(tx: Tx, timer: TimerRecord): Promise<string> {
  if (SESSION_KINDS.has(timer.kind)) return timer.id;
  const exec = await records.execution(timer.id).get(tx);
  if (!exec) {
    throw new Error(`deadline ${timer.kind} of ${timer.id} made events without an execution`);
  }
  return exec.sessionId;
}

/** Why a firing did nothing at all: its entry is gone (another wake-up fired it). */
export type DeadlineGone = Refusal<"gone">;

/**
 * Fires one deadline: runs its effect and deletes its entry in one checked commit, so its
 * effect is committed at most once however many wake-ups race (PROTOCOL.md section 8). A
 * wake-up that finds the entry gone (another one won) is refused with `gone`; one that comes
 * early leaves it armed (`early`). Errors of the firing are thrown.
 *
 * @example
 * ```ts
 * const fired = await fireDeadline(ctx, timerKey(timer));
 * if (fired.ok) console.log(fired.value.outcome); // e.g. "failed", "rearmed", "noop"
 * ```
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
 * firing. Results are in the order of `deadlines` (`null`: the entry was gone); each committed
 * firing's after-commit step has run. `callback` and `purge` deadlines are not fired here
 * (they do I/O): the timer runner fires them.
 *
 * @example
 * ```ts
 * const results = await fireDeadlines(ctx, listedEntries);
 * for (const r of results) if (r.ok && r.value) console.log(r.value.outcome);
 * ```
 */
export async function fireDeadlines(
  ctx: LifecycleContext,
  deadlines: readonly DeadlineRef[],
): Promise<BatchResult<Fired | null>[]> {
  const bodies = deadlines.map((ref) => firingBody(ctx, ref));
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
  if (kind === "heartbeat") {
    // Nearly every heartbeat firing finds its execution heard from and re-arms it: decided
    // from the record alone, before anything else is read, and not checked (see below).
    const seen = await tx.snapshot<ExecutionRecord>(records.execution(executionId).key);
    const heartbeat = heartbeatCheck(tx, p, seen);
    if (heartbeat) return heartbeat;
  }
  const exec = await records.execution(executionId).get(tx);
  if (!exec || isTerminal(exec.status)) return "noop";
  // Whatever the decision, ending the execution reads no more than this: one round trip.
  await tx.prefetch(finishReads(exec));
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
      return await heartbeatTimeout(ctx, tx, p, state);
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

/**
 * The heartbeat decision from a snapshot of the execution record: `noop` when it is gone or
 * not running, `rearmed` (armed again for when its silence would run out) when it was heard
 * from within its timeout, `undefined` when it has been silent too long and must end.
 *
 * Neither `noop` nor `rearmed` needs the record checked at commit (only the deadline's own
 * entry is): a concurrent writer can only move `lastHeartbeatAt` later or end the execution,
 * and then the re-armed check fires early, finds that, and re-arms or does nothing. So the
 * liveness writes of a busy execution never make its heartbeat firing conflict and rerun.
 */
function heartbeatCheck(
  tx: Tx,
  p: Pending,
  exec: ExecutionRecord | null,
): "noop" | "rearmed" | undefined {
  if (exec?.status !== "running") return "noop";
  const heardAt = exec.lastHeartbeatAt ?? Date.parse(exec.startedAt ?? exec.createdAt);
  const dueAt = heardAt + exec.heartbeatTimeoutMs;
  if (dueAt <= p.now) return undefined;
  armTimer(tx, "heartbeat", exec.executionId, dueAt);
  return "rearmed";
}

/** A running execution silent past its heartbeat timeout fails (or its interrupt is forced). */
async function heartbeatTimeout(
  ctx: LifecycleContext,
  tx: Tx,
  p: Pending,
  state: ExecutionState,
): Promise<FiringOutcome> {
  const { exec } = state;
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
