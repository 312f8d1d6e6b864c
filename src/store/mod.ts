/**
 * Typed access to every KV record. Transitions compose these inside `transact`; nothing
 * outside src/store builds a key.
 *
 * @module
 */
import { keys, type TimerKind } from "./keys.ts";
import type {
  ActiveSlot,
  ConnRecord,
  ExecutionRecord,
  ExecutionTimerKind,
  GraceRecord,
  HeadRecord,
  IdempotencyRecord,
  InboxMessage,
  InterruptFlag,
  QueueRecord,
  SessionRecord,
  TimerFields,
  TimerRecord,
} from "./records.ts";
import type { Tx } from "./transact.ts";
import { ulid } from "../ids.ts";
import { delay } from "../async.ts";

export * from "./records.ts";
export * from "./events.ts";
export { keepAgentInput, listAgentInputs } from "./inputs.ts";
export { transact, TransactionConflictError, type Tx } from "./transact.ts";
export { KnownEntries } from "./known_entries.ts";
export type { TimerKind } from "./keys.ts";

/** Read, write and delete one record inside a transaction. */
export interface Entry<T> {
  /** The record's key, for reading several records in one snapshot with `tx.getMany`. */
  readonly key: Deno.KvKey;
  get(tx: Tx): Promise<T | null>;
  set(tx: Tx, value: T, options?: { expireIn?: number }): void;
  delete(tx: Tx): void;
}

function entry<T>(key: Deno.KvKey): Entry<T> {
  return {
    key,
    get: (tx) => tx.get<T>(key),
    set: (tx, value, options) => tx.set(key, value, options),
    delete: (tx) => tx.delete(key),
  };
}

/**
 * An execution's `input` as stored: the UTF-8 bytes of its JSON (32 KiB of JSON can exceed a
 * KV value's 64 KiB as a structured value), or `{input}` as written before.
 */
export type StoredExecutionInput = Uint8Array | { input: unknown };

/** The stored form of an execution's `input`. */
export const storeExecutionInput = (input: unknown): StoredExecutionInput =>
  new TextEncoder().encode(JSON.stringify(input ?? null));

/**
 * An execution's `input` read back (`null` when there is none), from either stored form.
 *
 * @example
 * ```ts
 * readExecutionInput(storeExecutionInput({ prompt: "fix it" })); // { prompt: "fix it" }
 * readExecutionInput(null); // null
 * ```
 */
export function readExecutionInput(stored: StoredExecutionInput | null): unknown {
  if (stored instanceof Uint8Array) return JSON.parse(new TextDecoder().decode(stored));
  return stored?.input ?? null;
}

/** Idempotency records live this long (PROTOCOL.md 4: retries within 24 h). */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/** Longest delay KV queues accept. */
const MAX_QUEUE_DELAY_MS = 30 * 24 * 60 * 60 * 1000;
/** Inbox messages of an instance that died are garbage-collected after this. */
const INBOX_TTL_MS = 60 * 60 * 1000;

/**
 * Typed entries of the records that live under one key each, by the ids their key is made of.
 * The event log, inputs, timers and inbox are lists and have functions of their own.
 *
 * @example
 * ```ts
 * const exec = await records.execution(executionId).get(tx);
 * records.active(sessionId).set(tx, { executionId });
 * ```
 */
export const records = {
  session: (sid: string) => entry<SessionRecord>(keys.session(sid)),
  head: (sid: string) => entry<HeadRecord>(keys.head(sid)),
  active: (sid: string) => entry<ActiveSlot>(keys.active(sid)),
  queue: (sid: string) => entry<QueueRecord>(keys.queue(sid)),
  interrupt: (sid: string) => entry<InterruptFlag>(keys.interrupt(sid)),
  grace: (sid: string) => entry<GraceRecord>(keys.grace(sid)),
  execution: (eid: string) => entry<ExecutionRecord>(keys.exec(eid)),
  input: (eid: string) => entry<StoredExecutionInput>(keys.execInput(eid)),
  conn: (eid: string) => entry<ConnRecord>(keys.conn(eid)),
  idempotency: (sid: string, key: string) => entry<IdempotencyRecord>(keys.idem(sid, key)),
  inputIdempotency: (sid: string, eid: string, key: string) =>
    entry<IdempotencyRecord>(keys.inputIdem(sid, eid, key)),
  sessionExecution: (sid: string, eid: string) => entry<true>(keys.sessionExec(sid, eid)),
};

/**
 * Arms a durable deadline in the transaction: the timer entry, plus a queue message with
 * the same due time (dropped by `transact` where KV queues are off). So a deadline is stored
 * in the same commit as the change that arms it (PROTOCOL.md section 8). Each kind takes its
 * own fields: none for execution deadlines, `{incarnation}` for `ttl`/`purge`, `{attempt,
 * callback}` for `callback`.
 *
 * @example
 * ```ts
 * armTimer(tx, "grace", executionId, now + graceMs);
 * armTimer(tx, "ttl", sessionId, now + ttlMs, { incarnation });
 * ```
 */
export function armTimer(tx: Tx, kind: ExecutionTimerKind, id: string, dueAt: number): void;
/**
 * Arms a session deadline (`ttl`, `purge`: with the session's incarnation, so a session
 * created again under the same id is not affected) or a completion callback's try.
 *
 * @example
 * ```ts
 * armTimer(tx, "purge", sessionId, p.now, { incarnation: session.incarnation });
 * armTimer(tx, "callback", executionId, p.now, { attempt: 1, callback: { url, body } });
 * ```
 */
export function armTimer<K extends "ttl" | "purge" | "callback">(
  tx: Tx,
  kind: K,
  id: string,
  dueAt: number,
  fields: TimerFields<K>,
): void;
/**
 * The body of both overloads. A deadline further away than KV queues accept (30 days) gets
 * no queue message: the in-process sweep and the cron tick fire it.
 *
 * @example
 * ```ts
 * armTimer(tx, "pending", executionId, p.now + ctx.config.pendingTimeoutMs);
 * ```
 */
export function armTimer(
  tx: Tx,
  kind: TimerKind,
  id: string,
  dueAt: number,
  fields: object = {},
): void {
  const timer = { ...fields, kind, id, dueAt } as TimerRecord;
  tx.set(keys.timer(dueAt, kind, id), timer);
  const delay = Math.max(0, dueAt - Date.now());
  // KV refuses queue delays over 30 days; the sweep and cron carry those deadlines.
  if (delay <= MAX_QUEUE_DELAY_MS) tx.enqueue({ timer: keys.timer(dueAt, kind, id) }, { delay });
}

/** Key of a timer entry. */
export const timerKey = (timer: TimerRecord): Deno.KvKey =>
  keys.timer(timer.dueAt, timer.kind, timer.id);

/**
 * A listed timer entry: its key, its value as stored (checked by the firing side) and the
 * versionstamp it was listed at (a firing may use the listed value, checked at commit).
 */
export type TimerEntry = Deno.KvEntry<unknown>;

/**
 * Lists timer entries due at or before `until`, in due order, starting after `after` (a key
 * a previous page ended with). Reads nothing due later. The timer runner's sweep pages
 * through it; entries come with their versionstamps, so a firing can use them as read.
 *
 * @example
 * ```ts
 * const page = await listDueTimers(kv, Date.now(), { limit: 100 });
 * const next = await listDueTimers(kv, Date.now(), { limit: 100, after: page.at(-1)?.key });
 * ```
 */
export async function listDueTimers(
  kv: Deno.Kv,
  until: number,
  options: { limit: number; after?: Deno.KvKey },
): Promise<TimerEntry[]> {
  const { after } = options;
  const start = after ?? keys.timers();
  const end = [...keys.timers(), until + 1];
  // `start` is inclusive: the entry a previous page ended with is read again and skipped.
  const limit = options.limit + (after ? 1 : 0);
  const skip = after ? JSON.stringify(after) : undefined;
  const out: TimerEntry[] = [];
  for await (const e of kv.list({ start, end }, { limit })) {
    if (JSON.stringify(e.key) !== skip) out.push(e);
  }
  return out.slice(0, options.limit);
}

/**
 * Lists the armed timers in due order: every one, or with `until` those due at or before it
 * (nothing due later is read).
 *
 * @example
 * ```ts
 * const soon = await listTimers(kv, { until: Date.now() + 60_000 });
 * ```
 */
export async function listTimers(
  kv: Deno.Kv,
  options: { until?: number } = {},
): Promise<TimerRecord[]> {
  const selector = options.until === undefined
    ? { prefix: keys.timers() }
    : { start: keys.timers(), end: [...keys.timers(), options.until + 1] };
  const out: TimerRecord[] = [];
  for await (const e of kv.list<TimerRecord>(selector)) out.push(e.value);
  return out;
}

/**
 * Posts a message to the instance holding a socket, and rings its bell (the key that
 * instance watches). Written inside the transaction of the change that causes it, so the
 * message exists exactly when the change committed. A message for an instance that died
 * expires after an hour.
 *
 * @example
 * ```ts
 * postToInbox(tx, conn.instanceId, { type: "kill", connectionId: conn.connectionId, reason });
 * p.notified.add(conn.instanceId);
 * ```
 */
export function postToInbox(tx: Tx, instanceId: string, message: InboxMessage): void {
  tx.set(keys.inboxMessage(instanceId, ulid()), message, { expireIn: INBOX_TTL_MS });
  tx.set(keys.bell(instanceId), Date.now());
}

/** Most inbox messages {@link takeInbox} takes per call (one commit deletes them). */
export const INBOX_BATCH = 500;

/**
 * Takes (reads and deletes) the messages waiting for an instance, at most
 * {@link INBOX_BATCH} per call (a full batch means more may wait). The deletions are not
 * checked: only the instance itself takes its inbox, one call at a time.
 *
 * @example
 * ```ts
 * for (const message of await takeInbox(kv, instanceId)) console.log(message.type);
 * ```
 */
export async function takeInbox(kv: Deno.Kv, instanceId: string): Promise<InboxMessage[]> {
  const entries = await Array.fromAsync(
    kv.list<InboxMessage>({ prefix: keys.inbox(instanceId) }, { limit: INBOX_BATCH }),
  );
  if (entries.length > 0) {
    const op = kv.atomic();
    for (const e of entries) op.delete(e.key);
    await op.commit();
  }
  return entries.map((e) => e.value);
}

/**
 * Reads a key that is never written: resolves when KV answers within `timeoutMs`, rejects
 * when it fails or does not answer in time (a remote KV that hangs must not hang `/healthz`).
 *
 * @example
 * ```ts
 * const healthy = await probeKv(kv, 2000).then(() => true, () => false);
 * ```
 */
export async function probeKv(kv: Deno.Kv, timeoutMs: number): Promise<void> {
  const answered = new AbortController();
  const late = delay(timeoutMs, { signal: answered.signal }).then(() => {
    throw new Error(`KV did not answer within ${timeoutMs} ms`);
  });
  try {
    await Promise.race([kv.get(keys.healthProbe()), late]);
  } finally {
    answered.abort(); // the race has handled the aborted wait's rejection
  }
}

/** The key an instance watches for new inbox messages. */
export const bellKey = (instanceId: string): Deno.KvKey => keys.bell(instanceId);

/** The keys a viewer watches: the session's head (new events) and record (deletion). */
export const viewerWatchKeys = (sid: string): Deno.KvKey[] => [keys.head(sid), keys.session(sid)];

/**
 * Execution ids of a session in creation order, after `after` (exclusive), at most `limit`:
 * the page of `GET /v1/sessions/:sid/executions` (PROTOCOL.md section 4). Ids are ULIDs, so
 * key order is creation order.
 *
 * @example
 * ```ts
 * const ids = await listExecutionIds(kv, "ses_1", { after: "exc_01J…", limit: 100 });
 * ```
 */
export async function listExecutionIds(
  kv: Deno.Kv,
  sid: string,
  options: { after?: string; limit: number },
): Promise<string[]> {
  const prefix = keys.sessionExecs(sid);
  const selector = options.after
    ? { prefix, start: [...prefix, options.after + "\u0000"] }
    : { prefix };
  const out: string[] = [];
  for await (const e of kv.list(selector, { limit: options.limit })) out.push(e.key[3] as string);
  return out;
}

/**
 * Reads the current ingest connections this KV knows of (start-up sweep), with the
 * execution each belongs to. Not a snapshot: each one is checked again when acted on.
 *
 * @example
 * ```ts
 * const held = await listConnections(kv); // [{ executionId, conn: { instanceId, … } }, …]
 * ```
 */
export async function listConnections(
  kv: Deno.Kv,
): Promise<{ executionId: string; conn: ConnRecord }[]> {
  const out: { executionId: string; conn: ConnRecord }[] = [];
  for await (const e of kv.list<ConnRecord>({ prefix: keys.conns() })) {
    out.push({ executionId: e.key[1] as string, conn: e.value });
  }
  return out;
}

/**
 * Removes a deleted session's data in batches: events, chunks, records, executions and
 * idempotency records. The tombstone and the head stay (the caller removes the tombstone;
 * the head keeps eventIds from being reused). While the tombstone stands nothing writes
 * under the session (PROTOCOL.md section 4: the data is removed in the background), so each
 * batch of 500 only checks that it still stands at `tombstoneVersionstamp`: once another
 * instance has finished the purge and the id is created again, what is listed is the new
 * session's, and the purge stops (`false`) without touching it.
 *
 * @example
 * ```ts
 * const tombstone = await kv.get(records.session("ses_1").key);
 * await purgeSessionData(kv, "ses_1", tombstone.versionstamp!); // then drop the tombstone
 * ```
 */
export async function purgeSessionData(
  kv: Deno.Kv,
  sid: string,
  tombstoneVersionstamp: string,
): Promise<boolean> {
  const doomed: Deno.KvKey[] = [];
  const tombstone = { key: keys.session(sid), versionstamp: tombstoneVersionstamp };
  const flush = async (force: boolean) => {
    while (doomed.length >= 500 || (force && doomed.length > 0)) {
      const op = kv.atomic().check(tombstone);
      for (const key of doomed.splice(0, 500)) op.delete(key);
      if (!(await op.commit()).ok) return false;
    }
    return true;
  };
  for await (const e of kv.list({ prefix: keys.sessionExecs(sid) })) {
    const eid = e.key[3] as string;
    doomed.push(keys.exec(eid), keys.execInput(eid), keys.conn(eid));
    if (!(await flush(false))) return false;
  }
  for (const prefix of [keys.idemPrefix(sid), keys.sessionPrefix(sid)]) {
    for await (const e of kv.list({ prefix })) {
      doomed.push(e.key);
      if (!(await flush(false))) return false;
    }
  }
  return await flush(true);
}
