/**
 * Every Deno KV key Tether uses, built in one place. No other module spells a key.
 *
 * Layout (sid = session id, eid = execution id):
 * ```
 * ["session", sid]                    session record (a tombstone while being removed)
 * ["session", sid, "active"]          {executionId}: the active slot
 * ["session", sid, "queue"]           {executionIds}: the FIFO of waiting executions
 * ["session", sid, "interrupt"]       {executionId, reason, at}: the interrupt flag
 * ["session", sid, "grace"]           the disconnect grace record
 * ["session", sid, "exec", eid]       true: index of the session's executions (ULIDs sort by time)
 * ["session", sid, "event", id]       a page of envelopes from id on (JSON lines), one large
 *                                     envelope (UTF-8 bytes), or its chunk count
 * ["session", sid, "chunk", id, i]    chunk i of a large envelope
 * ["session", sid, "input", eid, n]   input n of an execution, kept for (re)delivery
 * ["head", sid]                       {lastEventId}: outlives deletion so ids are never reused
 * ["exec", eid]                       execution record
 * ["exec", eid, "input"]              the execution's input (written once)
 * ["conn", eid]                       the current ingest connection (listed by the restart sweep)
 * ["timer", dueAt, kind, id]          a durable deadline
 * ["idem", sid, key]                  a creation's response for Idempotency-Key retries
 * ["idem", sid, "input", eid, key]    an input's response for Idempotency-Key retries
 * ["inbox", instanceId, msgId]        a message for the instance that holds a socket
 * ["bell", instanceId]                bumped with every inbox message; watched by its owner
 * ["secret", "ticket"]                the ticket signing secret when none is configured
 * ["secret", "devApiKey"]             the dev-mode api key (local KV file, no TETHER_API_KEYS)
 * ["probe", "platform-kv"]            written at start-up on Deno Deploy to judge the KV (1 min TTL)
 * ["healthz"]                         never written: `/healthz` reads it to see KV answer
 * ```
 *
 * @module
 */

/** Kinds of durable deadlines. */
export type TimerKind =
  | "grace"
  | "heartbeat"
  | "pending"
  | "interrupt"
  | "callback"
  | "ttl"
  | "purge";

/**
 * The key builders, one per record (the layout above). The plural ones (`events`, `timers`,
 * `conns`, …) are the prefixes that list a kind; `sessionPrefix` is the whole session subtree,
 * which a purge removes.
 *
 * @example
 * ```ts
 * keys.exec("exc_1"); // ["exec", "exc_1"]
 * kv.list({ prefix: keys.sessionExecs("ses_1") }); // the session's executions, oldest first
 * ```
 */
export const keys = {
  session: (sid: string): Deno.KvKey => ["session", sid],
  active: (sid: string): Deno.KvKey => ["session", sid, "active"],
  queue: (sid: string): Deno.KvKey => ["session", sid, "queue"],
  interrupt: (sid: string): Deno.KvKey => ["session", sid, "interrupt"],
  grace: (sid: string): Deno.KvKey => ["session", sid, "grace"],
  sessionExec: (sid: string, eid: string): Deno.KvKey => ["session", sid, "exec", eid],
  sessionExecs: (sid: string): Deno.KvKey => ["session", sid, "exec"],
  event: (sid: string, eventId: number): Deno.KvKey => ["session", sid, "event", eventId],
  events: (sid: string): Deno.KvKey => ["session", sid, "event"],
  eventChunk: (sid: string, eventId: number, i: number): Deno.KvKey => [
    "session",
    sid,
    "chunk",
    eventId,
    i,
  ],
  eventChunks: (sid: string, eventId: number): Deno.KvKey => ["session", sid, "chunk", eventId],
  agentInput: (sid: string, eid: string, inputId: number): Deno.KvKey => [
    "session",
    sid,
    "input",
    eid,
    inputId,
  ],
  agentInputs: (sid: string, eid: string): Deno.KvKey => ["session", sid, "input", eid],
  head: (sid: string): Deno.KvKey => ["head", sid],
  exec: (eid: string): Deno.KvKey => ["exec", eid],
  execInput: (eid: string): Deno.KvKey => ["exec", eid, "input"],
  conn: (eid: string): Deno.KvKey => ["conn", eid],
  conns: (): Deno.KvKey => ["conn"],
  timer: (dueAt: number, kind: TimerKind, id: string): Deno.KvKey => ["timer", dueAt, kind, id],
  timers: (): Deno.KvKey => ["timer"],
  idem: (sid: string, key: string): Deno.KvKey => ["idem", sid, key],
  idemPrefix: (sid: string): Deno.KvKey => ["idem", sid],
  inputIdem: (
    sid: string,
    eid: string,
    key: string,
  ): Deno.KvKey => ["idem", sid, "input", eid, key],
  /** Everything under the session but its record (which is a key of its own, not a prefix). */
  sessionPrefix: (sid: string): Deno.KvKey => ["session", sid],
  inboxMessage: (instanceId: string, msgId: string): Deno.KvKey => ["inbox", instanceId, msgId],
  inbox: (instanceId: string): Deno.KvKey => ["inbox", instanceId],
  bell: (instanceId: string): Deno.KvKey => ["bell", instanceId],
  ticketSecret: (): Deno.KvKey => ["secret", "ticket"],
  devApiKey: (): Deno.KvKey => ["secret", "devApiKey"],
  platformProbe: (): Deno.KvKey => ["probe", "platform-kv"],
  healthProbe: (): Deno.KvKey => ["healthz"],
};
