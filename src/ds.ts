/**
 * The read path of the Durable Streams Protocol 1.0 over a session's event log
 * (PROTOCOL.md 6.1): offsets, cursors, bounded catch-up batches, and a follower that waits
 * for the log to grow. The HTTP shapes (headers, long-poll, SSE) live in `routes/ds.ts`.
 *
 * Offsets are eventIds written as 16 zero-padded digits: opaque to clients, sortable as
 * strings, and still valid after a session is deleted and created again, because eventIds
 * are never reused. An offset names the last event a reader has seen; `-1` is the start
 * (eventId 0) and `now` the current tail.
 *
 * @module
 */
import type { ReaderLease } from "./read_budget.ts";
import type { Runtime } from "./runtime.ts";
import {
  isLive,
  jsonSize,
  readEvents,
  readHead,
  records,
  type StoredEvent,
  transact,
} from "./store/mod.ts";

/** Digits of an offset: eventIds stay below 10^16 (they are safe integers). */
export const OFFSET_DIGITS = 16;

/**
 * The offset after `eventId` (the reader has seen every event up to it).
 *
 * @example
 * ```ts
 * encodeOffset(42); // "0000000000000042"
 * ```
 */
export function encodeOffset(eventId: number): string {
  return String(eventId).padStart(OFFSET_DIGITS, "0");
}

/** What an `offset` query parameter asks for. */
export type OffsetRequest = { after: number } | { tail: true };

/**
 * Parses an `offset` query parameter: absent or `-1` is the start, `now` the tail, else an
 * offset this server issued. `undefined` for anything else (a 400).
 *
 * @example
 * ```ts
 * parseOffset("-1"); // { after: 0 }
 * parseOffset("now"); // { tail: true }
 * parseOffset("0000000000000042"); // { after: 42 }
 * parseOffset("42"); // undefined: not one this server issued
 * ```
 */
export function parseOffset(text: string | undefined): OffsetRequest | undefined {
  if (text === undefined || text === "-1") return { after: 0 };
  if (text === "now") return { tail: true };
  if (!new RegExp(`^\\d{${OFFSET_DIGITS}}$`).test(text)) return undefined;
  const after = Number(text);
  return Number.isSafeInteger(after) ? { after } : undefined;
}

/** Start of the cursor intervals (the protocol's default epoch). */
const CURSOR_EPOCH_MS = Date.UTC(2024, 9, 9);
/** Length of one cursor interval (the protocol's default). */
const CURSOR_INTERVAL_MS = 20_000;

/**
 * The `Stream-Cursor` of a live response: the current 20 s interval since the protocol's
 * epoch, or, when the client already echoes that interval or a later one, its cursor plus
 * a random 1–3600 s jitter, so cursors only ever move forward and a cache cannot loop.
 *
 * @example
 * ```ts
 * headers.set(DurableStreamHeader.cursor, nextCursor(query.cursor, Date.now()));
 * ```
 */
export function nextCursor(
  clientCursor: string | undefined,
  now: number,
  random: () => number = Math.random,
): string {
  const interval = Math.floor((now - CURSOR_EPOCH_MS) / CURSOR_INTERVAL_MS);
  const echoed = clientCursor !== undefined && /^\d{1,15}$/.test(clientCursor)
    ? Number(clientCursor)
    : -1;
  if (echoed < interval) return String(interval);
  const jitterSeconds = 1 + Math.floor(random() * 3600);
  return String(echoed + Math.max(1, Math.ceil(jitterSeconds * 1000 / CURSOR_INTERVAL_MS)));
}

/** Limits of one batch of a read. */
export interface BatchLimits {
  /** Most events in one batch. Default 10,000 (the byte bound usually ends a batch first). */
  maxEvents?: number;
  /** Bytes after which a batch stops growing (at least one event). Default {@link BATCH_BYTES}. */
  maxBytes?: number;
}

/** About how many bytes one catch-up response holds (PROTOCOL.md 10). */
export const BATCH_BYTES = 4 * 1024 * 1024;

/** A contiguous run of the log after some offset. */
export interface Batch {
  events: StoredEvent[];
  /** The eventId to continue after (the last one returned, or the requested one). */
  nextAfter: number;
  /** True when the batch reaches the tail as it was when the read began. */
  upToDate: boolean;
}

/**
 * The session's newest eventId, or `undefined` when it is missing or deleted.
 *
 * @example
 * ```ts
 * const tail = await tailOf(rt, "ses_1"); // 0 for a session with no events yet
 * if (tail === undefined) throw new HttpError(ErrorCode.sessionNotFound, "session not found");
 * ```
 */
export async function tailOf(rt: Runtime, sessionId: string): Promise<number | undefined> {
  const [session, head] = await transact(
    rt.kv,
    (tx) => Promise.all([records.session(sessionId).get(tx), readHead(tx, sessionId)]),
  );
  return isLive(session) ? head.lastEventId : undefined;
}

/**
 * Raised when a read gave up waiting for the read budget (its request ended, or the budget
 * evicted the reader).
 *
 * @example
 * ```ts
 * try {
 *   await readBatch(rt, "ses_1", 0, lease, request.signal);
 * } catch (err) {
 *   if (!(err instanceof ReadAborted)) throw err;
 * }
 * ```
 */
export class ReadAborted extends Error {
  override name = "ReadAborted";
}

/**
 * Reads the events after `after` up to the current tail, bounded by `limits`; `undefined`
 * when the session is missing or deleted. The read's bytes are reserved through `lease`
 * first (waiting while the instance's read budget is spent) and held by it afterwards.
 *
 * @example
 * ```ts
 * using lease = rt.readBudget.open();
 * const batch = await readBatch(rt, "ses_1", 0, lease, request.signal);
 * ```
 */
export async function readBatch(
  rt: Runtime,
  sessionId: string,
  after: number,
  lease: ReaderLease,
  signal: AbortSignal,
  limits: BatchLimits = {},
): Promise<Batch | undefined> {
  const { maxEvents = 10_000, maxBytes = BATCH_BYTES } = limits;
  const tail = await tailOf(rt, sessionId);
  if (tail === undefined) return undefined;
  if (tail <= after) return { events: [], nextAfter: after, upToDate: true };
  if (!(await lease.reserve(maxBytes, signal))) throw new ReadAborted("read abandoned");
  const events = await readEvents(rt.kv, sessionId, {
    after,
    limit: maxEvents,
    upTo: tail,
    maxBytes,
  });
  lease.hold(jsonSize(events));
  // Nothing stored up to the tail (events commit with the head, read before): those ids were
  // never stored here (a session deleted and created again continues its eventIds), so the
  // read is complete. Stopping short of the tail would have catch-up clients page forever.
  if (events.length === 0) return { events, nextAfter: tail, upToDate: true };
  const cursor = events.at(-1)?.eventId ?? after;
  return { events, nextAfter: Math.max(after, cursor), upToDate: cursor >= tail };
}

/** Why {@link SessionFollower.waitBeyond} returned. */
export type WaitOutcome = "events" | "timeout" | "gone" | "aborted";

/**
 * Follows one session for a live read: subscribed to the hub once (local pushes, the
 * head watch and the hub's poll all wake it), it waits until the log grows past an
 * offset, the session goes away, a timeout passes or `signal` aborts.
 *
 * @example
 * ```ts
 * using follower = new SessionFollower(rt, "ses_1", rt.shutdown);
 * if (await follower.waitBeyond(41, 20_000) === "events") {
 *   // read from offset 41 again
 * }
 * ```
 */
export class SessionFollower implements Disposable {
  readonly #unsubscribe: () => void;
  readonly #signal: AbortSignal;
  #dirty = true;
  #wake?: () => void;

  constructor(
    private readonly rt: Runtime,
    private readonly sessionId: string,
    signal: AbortSignal,
  ) {
    this.#signal = signal;
    this.#unsubscribe = rt.hub.subscribe(sessionId, () => {
      this.#dirty = true;
      this.#wake?.();
    });
  }

  /** Waits until the tail is past `after` (at most `timeoutMs`). */
  async waitBeyond(after: number, timeoutMs: number): Promise<WaitOutcome> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#signal.aborted) return "aborted";
      if (this.#dirty) {
        this.#dirty = false;
        const tail = await tailOf(this.rt, this.sessionId);
        if (tail === undefined) return "gone";
        if (tail > after) return "events";
      }
      const left = deadline - Date.now();
      if (left <= 0) return "timeout";
      if (!this.#dirty) await this.#sleep(left);
    }
  }

  /** Sleeps until a wake-up, the abort, or `ms` passes. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#signal.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#signal.addEventListener("abort", done);
      this.#wake = done;
    });
  }

  [Symbol.dispose](): void {
    this.#wake?.();
    this.#unsubscribe();
  }
}
